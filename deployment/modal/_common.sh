# Shared by the deployment scripts: find Python and modal, and say what to do when they are not
# there or not logged in.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"

if ! "$python" -c "import modal" 2>/dev/null; then
  echo "modal is not installed for $python: pip install -e '$root[modal,openai]'" >&2
  exit 2
fi
if ! "$python" -c "import hi_moe" 2>/dev/null; then
  echo "hi_moe is not installed for $python: pip install -e '$root[modal,openai]'" >&2
  exit 2
fi

# Run a modal command; when it fails for want of credentials, say how to get them.
run_modal() {
  local log status
  log="$(mktemp)"
  "$python" -m modal "$@" 2> >(tee "$log" >&2) && status=0 || status=$?
  wait  # for tee to finish writing the log
  if [ "$status" -eq 0 ]; then
    rm -f "$log"
    return 0
  fi
  if grep -qiE "token (missing|not found)|not authenticated|no token|unauthenticated|AuthError" "$log"; then
    echo >&2
    echo "Modal has no credentials here. Run 'modal token new' (or set MODAL_TOKEN_ID and" >&2
    echo "MODAL_TOKEN_SECRET), then try again. See deployment/modal/README.md." >&2
  fi
  rm -f "$log"
  return "$status"
}

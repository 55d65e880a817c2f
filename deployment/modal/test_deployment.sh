#!/usr/bin/env bash
# Check a deployed server through the library's own provider: health, models, one request per
# adapter, one grammar-constrained request. Needs HI_MOE_MODAL__ENDPOINT (and the keys) set.
source "$(dirname "$0")/_common.sh"
if [ -z "${HI_MOE_MODAL__ENDPOINT:-}" ]; then
  echo "set HI_MOE_MODAL__ENDPOINT to the deployed URL (and HI_MOE_MODAL__API_KEY," >&2
  echo "HI_MOE_MODAL__PROXY_KEY, HI_MOE_MODAL__PROXY_SECRET); see deploy.sh's output" >&2
  exit 2
fi
export HI_MOE_PROVIDER=modal
exec "$python" -m hi_moe.ops.deployment_check

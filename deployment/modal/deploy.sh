#!/usr/bin/env bash
# Deploy the vLLM server. HI_MOE_DEPLOY_MODE=dev|demo|prod (default dev) picks GPU and scaling.
#   ./deployment/modal/deploy.sh            # deploy
#   ./deployment/modal/deploy.sh --download # first time: fetch the base model into its Volume
source "$(dirname "$0")/_common.sh"
cd "$root"
echo "deploying hi-moe-vllm in ${HI_MOE_DEPLOY_MODE:-dev} mode"
if [ "${1:-}" = "--download" ]; then
  run_modal run deployment/modal/vllm_server.py::download_model
fi
run_modal deploy deployment/modal/vllm_server.py
echo
echo "Deployed. Point hi_moe at it (the URL is printed above, ending in .modal.run):"
echo "  export HI_MOE_PROVIDER=modal HI_MOE_MODAL__ENDPOINT=https://<workspace>--hi-moe-vllm-serve.modal.run"
echo "  export HI_MOE_MODAL__API_KEY=<VLLM_API_KEY> HI_MOE_MODAL__PROXY_KEY=<wk-...> HI_MOE_MODAL__PROXY_SECRET=<ws-...>"
echo "Then: ./deployment/modal/test_deployment.sh"

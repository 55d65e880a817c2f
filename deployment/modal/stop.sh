#!/usr/bin/env bash
# Stop the deployed server (its containers stop; Volumes and the Secret stay).
source "$(dirname "$0")/_common.sh"
run_modal app stop hi-moe-vllm
echo "stopped hi-moe-vllm; redeploy with ./deployment/modal/deploy.sh"

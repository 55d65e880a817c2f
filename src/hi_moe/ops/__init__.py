"""Running the backends rather than calling them: what needs the heavy extras.

`serving` builds the one `vllm serve` command line (Modal and local CPU servers alike) and runs
local servers; `tiny` makes the offline test model; `training` trains LoRA adapters (`train`
extra); `deploy` and `deployment_check` are the Modal side (`modal` extra); `doctor` asks a live
provider whether it really enforces what it claims. Nothing in the seam, the providers or the
pipeline imports this package.
"""

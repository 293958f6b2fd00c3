"""The model code `mm1 export --format hf` ships in the folder of a model that is not a standard
LlavaForConditionalGeneration (loaded with `trust_remote_code=True`). These files import only torch
and transformers, and each other by relative import, as transformers' remote code requires; the
export copies them as they are."""

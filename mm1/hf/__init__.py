"""Hugging Face export: an mm1 model as a folder that transformers' Auto classes load
(`mm1 export RUN --format hf`). See mm1.hf.export."""

"""mm1: MM1-style multimodal LLM pre-training and ablation studies."""
__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a checkpoint folder (model + config + tokenizer) written by `mm1 pretrain`."""
    from mm1.train.model_folder import load_model_folder

    return load_model_folder(path, device=device)

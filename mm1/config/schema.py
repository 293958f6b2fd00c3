"""The typed config tree. One recipe YAML maps onto `Config`.

Every field documents itself in the comment beside it. Values that depend on
other values (`None` here, meaning "derive it") are filled in by
`mm1.config.derive` after the YAML and the command-line overrides are applied,
so an override never leaves a stale derived value behind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from mm1.eval.config import EvalConfig  # the evaluation settings, shared with mm1 eval and the grids
from mm1.fields import checked
from mm1.model.connectors import ConnectorConfig  # kind, num_tokens and each connector's own options
from mm1.model.moe import MoEConfig  # the MoE layers' own settings

@dataclass
class WarmStartConfig:
    """A contrastive warm start of the encoder before pre-training (mm1.train.warmstart): a small CLIP
    trained on one caption source at the run's resolution, cached and shared by runs with equal settings."""
    source: str = "caption"  # a data.sources entry of kind caption
    steps: int = checked(300, ">0")
    batch_size: int = checked(256, ">0")  # pairs per step (the contrastive negatives)
    lr: float = checked(1e-3, ">0")
    max_pairs: int = checked(20000, ">0")  # pairs read into memory (the first ones of the source)
    text_layers: int = checked(2, ">0")  # the throw-away text transformer
    text_width: int = checked(128, ">0")
    seed: int = 0


@dataclass
class VisionConfig:
    name: Optional[str] = None  # open_clip model name (e.g. ViT-L-14); None = build from the explicit dims below
    pretrained: Optional[str] = None  # open_clip pretrained tag or a local checkpoint file; None = random init
    image_size: Optional[int] = checked(None, ">0")  # pixels; None = the named model's native size (64 for explicit dims);
    # positional embeddings are interpolated when it differs from the checkpoint's
    patch_size: int = checked(8, ">0")  # explicit dims (used when name is None)
    width: int = checked(128, ">0")
    layers: int = checked(4, ">0")
    heads: int = checked(4, ">0")
    mlp_ratio: float = checked(4.0, ">0")
    feature_layer: int = -1  # which transformer block's output feeds the connector (-1 = last, -2 = penultimate)
    freeze: bool = False  # freeze the encoder's weights
    warm_start: Optional[WarmStartConfig] = None  # train the encoder contrastively on caption pairs first
    # (the small-scale stand-in for a CLIP-pretrained encoder); excludes `pretrained`


@dataclass
class DecoderConfig:
    arch: str = "llama"  # one of mm1.model.decoder.ARCHS (ignored when `pretrained` is set)
    pretrained: Optional[str] = None  # local Hugging Face model directory; None = random init from the dims below
    hidden_size: int = checked(256, ">0")
    num_layers: int = checked(4, ">0")
    num_heads: int = checked(4, ">0")
    num_kv_heads: Optional[int] = checked(None, ">0")  # None = num_heads
    intermediate_size: Optional[int] = checked(None, ">0")  # None = 8/3 * hidden_size rounded up to a multiple of 64
    vocab_size: Optional[int] = checked(None, ">0")  # None = the tokenizer's size
    max_position_embeddings: Optional[int] = checked(None, ">0")  # None = data.seq_len
    tie_embeddings: bool = False
    rope_theta: float = checked(10000.0, ">0")
    moe: Optional[MoEConfig] = None  # None = dense decoder
    attention: str = "auto"  # packed rows: dense (L x L mask) | flex (FlexAttention block mask) | docs (padded
    # documents, causal SDPA) | varlen (flash varlen, CUDA) | auto (CUDA: varlen, else flex; CPU: docs for rows
    # of 1024+ tokens, else dense)


@dataclass
class TokenizerConfig:
    kind: Optional[str] = None  # synth: a word-level tokenizer of the embedded corpus's vocabulary | bytes: one
    # token per UTF-8 byte (any text, no download) | pretrained: a local HF tokenizer dir; None = pretrained
    # (model.decoder.pretrained's own) when that is set, else synth. It must match a pretrained decoder's vocabulary
    path: Optional[str] = None  # for "pretrained"; None = model.decoder.pretrained


@dataclass
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


@dataclass
class SourceConfig:
    kind: str = "caption"  # caption | interleaved | text
    shards: list[str] = field(default_factory=list)  # shard patterns, brace expansion allowed; relative to data.root


@dataclass
class SynthConfig:
    seed: int = 0
    caption_samples: int = checked(6000, ">0")
    interleaved_samples: int = checked(3000, ">0")
    text_samples: int = checked(3000, ">0")
    eval_samples: int = checked(1000, ">0")  # images per held-out eval split
    samples_per_shard: int = checked(1000, ">0")
    image_size: int = checked(128, ">0")  # rendered resolution: above every tiny grid's, so resolution is a real knob
    corner_scenes: float = checked(0.0, "[0,1]")  # share of corner scenes: small shapes in pairs on a 4x4 grid,
    # asked about by corner (the synth_corner task; docs/benchmark.md); 0 = the version-3 corpus, byte for byte
    gallery_docs: float = checked(0.0, "[0,1]")  # share of interleaved documents that are galleries: pictures
    # captioned in one of four styles kept through the document (the synth_caption_style task); 0 = none, and
    # the version-4 corpus, byte for byte
    striped_scenes: float = checked(0.0, "[0,1]")  # share of the five-slot scenes drawn on the gray background
    # with every large shape in fine stripes of its colour and its complement, which average to the gray: seen
    # at 64 px, gone at 32 (the synth_stripes task); 0 = none, and the version-4 corpus, byte for byte


@dataclass
class DataConfig:
    root: Optional[str] = None  # folder that relative shard patterns resolve against; None = with data.synth,
    # the embedded corpus's folder in the user cache ($MM1_CACHE, else $XDG_CACHE_HOME/mm1, else ~/.cache/mm1)
    synth: Optional[SynthConfig] = None  # when set, generate the embedded corpus into `root` if it is missing
    # (only into a folder that is absent, empty or holds an embedded corpus); null for your own shards
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    mixture: dict[str, float] = checked(dict, ">=0", factory=True)  # source name -> weight (normalised)
    mixture_unit: str = "documents"  # what the weights are shares of: documents (MM1's wording; each next
    # document's source is a weighted random pick) | tokens (the tokens a document puts into the sequences,
    # text and image placeholders: the next document comes from the source furthest below its share)
    seq_len: int = checked(128, ">0")  # tokens per training sequence
    packing: bool = True  # pack several documents per sequence (attention never crosses documents)
    max_images_per_seq: int = checked(4, ">0")
    num_workers: int = checked(0, ">=0")  # dataloader worker processes
    max_skip_rate: float = checked(0.05, "[0,1]")  # stop the run when more than this share of samples is unusable
    max_damaged_shard_rate: float = checked(0.1, "[0,1]")  # stop the run when more than this share of
    # shard reads ends early on a damaged (cut short, unreadable) shard
    seed: int = 0


@dataclass
class OptimConfig:
    lr: Union[float, str] = checked("auto", ">0")  # peak lr, or "auto" = MM1's law exp(-0.4214 ln N - 0.5535), N = non-embedding params
    weight_decay: Optional[float] = checked(None, ">=0")  # None = 0.1 * lr (MM1)
    betas: list[float] = checked(lambda: [0.9, 0.95], "[0,1)", factory=True)
    eps: float = checked(1e-8, ">0")
    warmup_steps: int = checked(20, ">=0")
    min_lr_ratio: float = checked(0.1, "[0,1]")  # cosine decays to this fraction of the peak
    grad_clip: float = checked(1.0, ">0")


@dataclass
class TrainConfig:
    steps: int = checked(100, ">0")  # optimizer steps
    batch_size: int = checked(16, ">0")  # sequences per micro-batch
    grad_accum: int = checked(1, ">0")  # micro-batches per optimizer step
    global_batch_size: Optional[int] = checked(None, ">0")  # sequences per step over all processes; sets grad_accum at launch
    precision: str = "auto"  # auto | bf16 | fp32 (auto = bf16 autocast on GPUs that support it, else fp32)
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    log_every: int = checked(10, ">0")
    threads: Optional[int] = checked(None, ">0")  # torch CPU threads; None = torch's default
    checkpoint_every: int = checked(0, ">=0")  # optimizer steps between full-state checkpoints; 0 = only at the end
    keep_checkpoints: int = checked(2, ">0")  # how many full-state checkpoints to keep (the newest)
    max_bad_steps: int = checked(5, ">0")  # consecutive non-finite losses / gradient norms before the run stops
    deterministic: bool = False  # torch deterministic algorithms (bit-identical resume on CPU)


@dataclass
class ParallelConfig:
    strategy: str = "auto"  # auto (fsdp when launched on >1 process, else none) | none | ddp | fsdp
    dp_replicate: int = checked(1, ">0")  # FSDP2 replicas (hybrid sharding when both > 1)
    dp_shard: int = -1  # ranks each replica is sharded over; -1 = world_size / dp_replicate
    activation_checkpointing: bool = False  # recompute decoder layers and vision blocks in backward
    compile: bool = False  # torch.compile each decoder layer and vision block
    gpus: Optional[int] = checked(None, ">0")  # the GPU count the recipe's layout is written for (mm1 info's
    #   default --gpus); informative: a run uses the processes it is launched with


@dataclass
class OutputConfig:
    dir: str = "runs/tiny"  # run folder: resolved config, metrics.jsonl, checkpoint/
    tensorboard: bool = False  # also log the metrics to <dir>/tensorboard (the extra mm1[tensorboard])
    wandb: bool = False  # also log the metrics and config to Weights & Biases (the extra mm1[wandb];
    # WANDB_MODE=offline writes the W&B run to <dir>/wandb only, for a later `wandb sync`)
    wandb_project: str = "mm1"  # the W&B project of output.wandb


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

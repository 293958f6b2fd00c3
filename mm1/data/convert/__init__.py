"""Converters from source dataset formats to mm1 shards (formats: docs/data.md).

- `convert_coco`: COCO-captions JSON + image folder -> caption shards;
- `convert_obelics`: OBELICS-style parquet / JSON-lines rows -> interleaved shards;
- `convert_text`: `{"text": ...}` JSON lines -> text shards.
Each returns a `Report`: samples and images written, shards, and what was left out by reason.
"""
from mm1.data.convert.coco import convert_coco
from mm1.data.convert.obelics import convert_obelics
from mm1.data.convert.text import convert_text
from mm1.data.convert.writer import Report, ShardOptions, ShardWriter, shuffled

__all__ = ["Report", "ShardOptions", "ShardWriter", "convert_coco", "convert_obelics", "convert_text", "shuffled"]

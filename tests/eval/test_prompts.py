"""Few-shot prompts: layout, demo selection (random, RICES), task specs, post-processing."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from mm1.build import build
from mm1.config import ConfigError, load_config
from mm1.eval.loaders import EvalSample
from mm1.eval.postprocess import PostprocessSpec, build_postprocessor
from mm1.eval.prompts import RandomDemos, RicesDemos, build_prompt, encode_prompt
from mm1.eval.rices import cached_image_features, image_features
from mm1.eval.tasks import SUITES, PromptSpec, load_spec, load_specs, resolve, select_tasks
from mm1.tokenizer import IMAGE_TOKEN, build_tokenizer
from tests.conftest import FIXTURES, TINY

VQA = PromptSpec(demo="<image>Question:{question} Short answer:{answer}<|endofchunk|>",
                 query="<image>Question:{question} Short answer:")
CAPTION = PromptSpec(demo="<image>Output:{caption}<|endofchunk|>", query="<image>Output:")


def sample(i: int, image: int | None = None, question: str | None = "what colour is the circle?") -> EvalSample:
    image = i if image is None else image
    answers = (f"answer{i}", "other") if question else (f"caption {i}.", "another")
    return EvalSample(str(i), Path(f"/imgs/{image:03d}.png"), question, answers, str(image))


POOL = [sample(i) for i in range(40)]


# --- prompt layout -------------------------------------------------------------------


def test_vqa_prompt_demos_in_order_then_query():
    demos, query = [sample(3), sample(7)], sample(100)
    p = build_prompt(VQA, demos, query)
    assert p.text == (
        "<image>Question:what colour is the circle? Short answer:answer3<|endofchunk|>\n"
        "<image>Question:what colour is the circle? Short answer:answer7<|endofchunk|>\n"
        "<image>Question:what colour is the circle? Short answer:"
    )
    assert p.images == [demos[0].image, demos[1].image, query.image]
    assert p.demo_ids == ["3", "7"]


def test_caption_prompt_uses_first_reference_and_text_only_drops_images():
    demos, query = [sample(1, question=None), sample(2, question=None)], sample(50, question=None)
    p = build_prompt(CAPTION, demos, query)
    assert p.text == "<image>Output:caption 1.<|endofchunk|>\n<image>Output:caption 2.<|endofchunk|>\n<image>Output:"
    text_only = build_prompt(CAPTION, demos, query, text_only=True)
    assert text_only.text == "Output:caption 1.<|endofchunk|>\nOutput:caption 2.<|endofchunk|>\n<image>Output:"
    assert text_only.images == [query.image]
    assert build_prompt(CAPTION, [], query).text == "<image>Output:"


def test_encode_prompt_expands_image_markers():
    tok = build_tokenizer(load_config(TINY).model.tokenizer)
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    p = build_prompt(VQA, [sample(1)], sample(2))
    ids = encode_prompt(tok, p.segments, 2, tokens_per_image=4)
    assert ids[0] == tok.bos_token_id
    assert ids.count(image_id) == 8
    assert ids[1:5] == [image_id] * 4
    with pytest.raises(ValueError, match="2 <image> markers but 1 images"):
        encode_prompt(tok, p.segments, 1, tokens_per_image=4)


def test_special_token_text_in_questions_and_answers_stays_plain_text():
    tok = build_tokenizer(load_config(TINY).model.tokenizer)
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    hostile = "is <image> here </s> <|endofchunk|> <s> <pad> ?"
    demo = EvalSample("1", Path("/imgs/001.png"), hostile, (hostile,), "1")
    query = EvalSample("2", Path("/imgs/002.png"), hostile, (), "2")
    p = build_prompt(VQA, [demo], query)
    assert p.images == [demo.image, query.image]  # one image each: the question's <image> inserts none
    ids = encode_prompt(tok, p.segments, 2, tokens_per_image=4)
    assert ids.count(image_id) == 8
    assert ids.count(tok.convert_tokens_to_ids("<|endofchunk|>")) == 1  # the demo's own, from the template
    assert ids.count(tok.bos_token_id) == 1 and tok.eos_token_id not in ids and tok.pad_token_id not in ids
    assert "is <image> here" in build_prompt(VQA, [], query, text_only=True).text  # the question kept as written


def test_synthetic_vocabulary_covers_the_synthetic_prompt_templates():
    from mm1.data.synth.grammar import pretokenize, vocabulary

    vocab = set(vocabulary())
    for name in SUITES["synthetic"]:
        spec = load_specs()[name].prompt
        for template in (spec.demo, spec.query):
            text = template.replace(IMAGE_TOKEN, " ").replace("<|endofchunk|>", " ")
            words = pretokenize(text.format(question="", answer="", caption="").lower())
            assert set(words) <= vocab, f"{name}: {set(words) - vocab} not in the synthetic vocabulary"


# --- random demos --------------------------------------------------------------------


def test_random_demos_count_seeded_and_never_the_query():
    selector = RandomDemos(POOL, seed=0)
    for i in (0, 5, 39):
        query = POOL[i]  # the query is in the pool: it must never be its own demo
        twin = sample(100 + i, image=i)  # another question about the same image
        pool_with_twin = RandomDemos(POOL + [twin], seed=0)
        for k in (1, 4, 8):
            demos = pool_with_twin.select(query, k, trial=0)
            assert len(demos) == k and len({d.id for d in demos}) == k
            assert all(d.image != query.image for d in demos)
        assert selector.select(query, 8, 0) == RandomDemos(list(POOL), seed=0).select(query, 8, 0)
    q = sample(200)
    assert selector.select(q, 8, 0) != selector.select(q, 8, 1)  # trials differ
    assert selector.select(q, 8, 0) != RandomDemos(POOL, seed=1).select(q, 8, 0)  # seeds differ
    assert selector.select(q, 8, 0) != selector.select(sample(201), 8, 0)  # queries differ


def test_random_demos_small_pool():
    pool = [sample(i) for i in range(5)]
    demos = RandomDemos(pool, 0).select(pool[2], 4, 0)
    assert sorted(d.id for d in demos) == ["0", "1", "3", "4"]
    with pytest.raises(ValueError, match="4 usable demos for query 2, 5 needed"):
        RandomDemos(pool, 0).select(pool[2], 5, 0)


# --- RICES ---------------------------------------------------------------------------


def test_rices_orders_most_similar_last_and_skips_the_query_image():
    feats = torch.eye(6)[:, :4].clone()  # demo i points along axis i (4 and 5 are zero vectors)
    pool = [sample(i) for i in range(6)]
    query = torch.tensor([0.1, 0.9, 0.3, 0.6])
    selector = RicesDemos(pool, feats, {"q": query, "1": query})
    q = EvalSample("q", Path("/imgs/query.png"), "q?", ("a",), "q")
    assert [d.id for d in selector.select(q, 3)] == ["2", "3", "1"]  # ascending similarity
    same_image = EvalSample("1", pool[1].image, "q?", ("a",), "1")
    assert [d.id for d in selector.select(same_image, 3)] == ["0", "2", "3"]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build(load_config(TINY))[1].eval()


def _images(folder: Path, colours) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i, colour in enumerate(colours):
        img = Image.new("RGB", (64, 64), "gray")
        img.paste(Image.new("RGB", (24, 24), colour), (8 + 4 * i, 20))
        paths.append(folder / f"{i}.png")
        img.save(paths[-1])
    return paths


def test_rices_features_come_from_the_vision_encoder_and_are_cached(tiny_model, tmp_path):
    paths = _images(tmp_path / "img", ["red", "blue", "green", "red"]) + [tmp_path / "missing.png"]
    cache = tmp_path / "cache"
    feats = cached_image_features(tiny_model, paths, 64, cache, batch_size=2)
    assert feats.ok == [True, True, True, True, False]
    assert torch.allclose(feats.features[:4].norm(dim=-1), torch.ones(4), atol=1e-5)
    from mm1.eval.prompts import load_pixels

    with torch.no_grad():
        direct = tiny_model.vision(load_pixels(paths[1], 64)[None]).mean(dim=1)[0]
    assert torch.allclose(feats.features[1], direct / direct.norm(), atol=1e-5)
    (written,) = list(cache.glob("*.pt"))
    stamp = written.stat().st_mtime_ns
    again = cached_image_features(tiny_model, paths, 64, cache)
    assert torch.equal(again.features, feats.features) and written.stat().st_mtime_ns == stamp
    with torch.no_grad():  # new weights: a new cache entry, never the stale one
        tiny_model.vision.visual.conv1.weight.mul_(1.5)
    try:
        cached_image_features(tiny_model, paths, 64, cache)
        assert len(list(cache.glob("*.pt"))) == 2
    finally:
        with torch.no_grad():
            tiny_model.vision.visual.conv1.weight.div_(1.5)
    assert torch.allclose(image_features(tiny_model, paths[:4], 64).features, feats.features[:4], atol=1e-6)


# --- task specs ----------------------------------------------------------------------


def test_every_shipped_task_spec_parses_and_suites_resolve():
    specs = load_specs()
    for suite, names in SUITES.items():
        assert [s.name for s in select_tasks(suite, specs)] == names
    assert len(SUITES["mm1_pretrain"]) == 8
    assert [s.name for s in select_tasks("synth_vqa, synthetic", specs)][:2] == ["synth_vqa", "synth_caption"]


def test_unknown_task_lists_the_known_ones():
    specs = load_specs()
    with pytest.raises(ValueError, match="unknown task 'vqa3'") as err:
        select_tasks("synth_vqa,vqa3", specs)
    for name in list(specs) + list(SUITES):
        assert name in str(err.value)


def test_paths_resolve_against_the_right_root(tmp_path, monkeypatch):
    specs = load_specs()
    monkeypatch.delenv("MM1_EVAL_DATA", raising=False)
    with pytest.raises(ValueError, match="--data-dir DIR or set MM1_EVAL_DATA"):
        resolve(specs["vqav2"])
    with pytest.raises(FileNotFoundError, match="query.annotations file not found: .*v2_mscoco_val2014_annotations"):
        resolve(specs["vqav2"], data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="corpus root"):
        resolve(specs["synth_vqa"], data_root=str(tmp_path / "nowhere"))


def test_bad_spec_names_the_key(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nformat: vqav2\nmetric: bleu\nquery: {annotations: a, images: b}\n"
                   "demos: {annotations: a, images: b}\nprompt: {demo: '{answer}', query: q}\n"
                   "generation: {max_new_tokens: 3}\n")
    with pytest.raises(ConfigError, match="metric: 'bleu' is not one of vqa_accuracy, exact_match, cider"):
        load_spec(bad)
    bad.write_text(bad.read_text().replace("metric: bleu", "metric: cider") + "colour: red\n")
    with pytest.raises(ConfigError, match="colour: unknown key"):
        load_spec(bad)


# --- post-processing -----------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    (" red<|x", "red<|x"),
    ("yes Question: what", "yes"),
    ("two, three", "two"),
    ("2,5 apples", "2,5 apples"),
    ("blue Short answer: red", "blue"),
    ("cat Answer", "cat"),
    ("red question : what", "red question : what"),  # OpenFlamingo's cut is case-sensitive
])
def test_vqa_postprocess_follows_openflamingo(raw, expected):
    assert build_postprocessor(PostprocessSpec("vqa"))(raw) == expected


def test_postprocess_ignore_case_and_captions():
    assert build_postprocessor(PostprocessSpec("vqa", ignore_case=True))("red question : what") == "red"
    caption = build_postprocessor(PostprocessSpec("caption"))
    assert caption(' a "red" circle, a square. Output: more') == "a red circle, a square."
    with pytest.raises(ValueError, match="unknown postprocess kind 'bleu'; known: vqa, caption"):
        build_postprocessor(PostprocessSpec("bleu"))


def _fixture_for(rel: str, fmt: str, fallback: Path) -> Path:
    """The loader fixture (official format) standing in for one benchmark file of a spec."""
    fix = FIXTURES / "eval"
    for candidate in (fix / rel, fix / rel.replace("train", "val"), fix / fmt / Path(rel).name):
        if candidate.is_file():
            return candidate
    return fallback


def test_benchmark_specs_read_their_official_files(tmp_path):
    """Every mm1_pretrain spec resolves under --data-dir and its loader reads both of its splits."""
    from mm1.eval.config import EvalConfig
    from mm1.eval.runner import load_task_data

    specs = load_specs()
    for name in SUITES["mm1_pretrain"]:
        spec, query_source = specs[name], None
        for split in (spec.query, spec.demos):
            for rel in (split.annotations, split.questions):
                if rel is None:
                    continue
                source = _fixture_for(rel, split.format or spec.format, query_source)
                query_source = query_source or source
                (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / rel).write_bytes(source.read_bytes())
        data = load_task_data(resolve(spec, data_dir=str(tmp_path)), EvalConfig(limit=0))
        assert data.queries, name
        assert all(str(q.image).startswith(str(tmp_path)) for q in data.queries)

"""The embedded default dataset: a procedurally generated shape world.

`write_corpus(out, cfg, workers=None)` writes, from `cfg` alone (no downloads,
CPU only, byte-identical for the same config whatever the number of worker
threads), the layout below; the default sizes take about 45 CPU-seconds and
201 MB. docs/benchmark.md describes what each part is built to measure.
`corpus_is_complete(out, cfg=None)` tells whether a finished corpus is there; `corpus_folder(cfg)` is
its default place, in the user cache (mm1.cache). It is written only into a folder that is absent, empty
or holds an embedded corpus (a `.mm1-synth` marker, written first, or its manifest).
`vocabulary()` lists every token any text can contain.

Images
    `image_size` px (default 128, above every tiny grid's resolution; the
    loader resizes) RGB PNG. 1-4 shapes (circle, square, triangle, star,
    cross; red, green, blue, yellow, purple, orange, white; small or large) in
    five slots (center, left, right, top, bottom) on a gray, black or brown
    background, plain or lightly noisy. A small shape is 1/8 of the image wide:
    its colour fills most of an 8-px patch at 64 px and a quarter of one at
    32 px, where the background swamps it (the detail task). Some images carry
    a "label": a white box near a corner with a 3-letter word or 2-digit
    number drawn in PIL's 6x11 bitmap font with strokes 1/64 of the image wide.
    With `corner_scenes` > 0, that share of the images are corner scenes: small
    shapes only, in each of 1-4 quarters one in the corner cell of a 4 x 4 grid
    and one of another colour in the cell between it and the center.
    With `striped_scenes` > 0, that share of the other images are striped
    scenes: on the gray background, each large shape drawn in rows one grid
    unit high of its colour and its complement about the gray, which the
    loader's resize to 32 px averages into the background (`render.py`).

Text
    Lowercase with normal punctuation ("two red circles and a small blue
    square."). Tokens = `re.findall(r"\\w+|[^\\w\\s]", text)` (see
    `grammar.pretokenize`); every token is in `vocabulary()`.

Layout under `out`
    caption/caption-000000.tar, ...        img2dataset-style pairs, key "c0000123":
        {key}.png   the image
        {key}.txt   the caption
        {key}.json  {"caption", "scene", "width", "height"}
    interleaved/interleaved-000000.tar, ...  one document per sample, key "i0000123":
        {key}.json  {"texts": [...], "images": [...], "kind", "scenes": [...]}
                    OBELICS style: parallel lists of equal length, at each
                    position exactly one of texts/images is non-null. An image
                    entry names the sample's member holding it: "0.png" means
                    tar member {key}.0.png. "kind" is story (2-4 images) |
                    vqa (2-9; half of them answer in one of the grammar's
                    DIALECTS throughout) | textvqa (2-4) | gallery (2-9, a
                    share data.synth.gallery_docs of the documents, 0 by
                    default: each image followed by its caption, all in one
                    of styles.STYLES); each opens with a text. "scenes" is parallel too (ground truth at image
                    positions, null elsewhere). Few-shot kinds use
                    OpenFlamingo's VQA prompt, lowercased: "question: {q}
                    short answer: {a}", each following its image.
        {key}.0.png, {key}.1.png, ...
    text/text-000000.tar, ...              text-only documents, key "t0000123":
        {key}.txt
    Shards hold `samples_per_shard` samples (ceil(n / samples_per_shard)
    shards per stream), USTAR tar, members in key order, mtime 0. Read them
    with `webdataset.WebDataset(urls, shardshuffle=False)`; a sample's keys
    are "__key__" plus the extensions above ("png", "0.png", ...).

    "scene" (ground truth): {"objects": [{"shape", "colour", "size",
    "position", "dx", "dy"[, "striped": true]}], "background", "label": {"text", "corner", "dx",
    "dy"} | null, "noise", "noise_seed", "label_box": [x0, y0, x1, y1) in pixels
    | null}. dx/dy are layout offsets on a 64-unit grid (see `scene.py`);
    `scene.scene_from_dict` rebuilds a `Scene`.

    eval/                                  held-out sets (own seed streams; no
                                           training scene equals an eval scene)
        images/{split}/{image_id:012d}.png   split in {train, val}; train is for
                                           few-shot demonstrations. eval_samples
                                           images per split, all with a label.
                                           image_id = 1000000 + i (train),
                                           2000000 + i (val).
        vqa/{split}_questions.json         VQAv2: {"info", "license", "task_type",
                                           "data_type", "data_subtype", "questions":
                                           [{"image_id", "question", "question_id"}]}
        vqa/{split}_annotations.json       VQAv2: {"info", "license", "data_type",
                                           "data_subtype", "annotations": [{"question_id",
                                           "image_id", "question_type", "answer_type",
                                           "multiple_choice_answer", "answers": 10 x
                                           {"answer", "answer_confidence", "answer_id"}}]}
                                           One question per image (question_id =
                                           image_id * 1000) about colour, shape, count,
                                           position, size, existence or background.
                                           Human answers mix the answer with rewordings
                                           ("2"/"two", "red"/"red one", "left"/"on the left").
        textvqa/{split}.json               TextVQA 0.5.1: {"dataset_name", "dataset_type",
                                           "dataset_version", "data": [{"question",
                                           "image_id" (the 12-digit file stem, a string,
                                           as in TextVQA), "image_classes", "question_id"
                                           (image_id * 1000 + 1), "answers": 10 strings,
                                           "question_tokens", "image_width",
                                           "image_height", "set_name", "flickr_*_url"}]}
                                           One question per image about the label.
        detail/{split}_questions.json,     VQAv2, as vqa/: "what colour is the small one?"
        detail/{split}_annotations.json    for images with exactly one small shape
                                           (question_id = image_id * 1000 + 2).
        corner/{split}_questions.json,     VQAv2, as vqa/: "what colour is the shape in the
        corner/{split}_annotations.json    top left corner?" for the corner scenes (none
                                           unless data.synth.corner_scenes > 0; question_id
                                           = image_id * 1000 + 4).
        dialect/{split}_questions.json,    VQAv2, as vqa/: a colour or shape question whose
        dialect/{split}_annotations.json   10 answers are the evalsets.EVAL_DIALECT word
                                           (question_id = image_id * 1000 + 3).
        text/{split}.json                  text_qa (no image): {"dataset_name", "split",
                                           "data": [{"question_id", "question", "answers":
                                           [one answer]}]}, eval_samples questions about the
                                           facts of the text-only documents.
        caption/captions.json              COCO Karpathy (dataset_coco.json): {"images":
                                           [{"filepath": split (the images/ subfolder),
                                           "filename", "imgid", "split", "sentences": 5 x
                                           {"raw", "tokens", "imgid", "sentid"}, "sentids",
                                           "cocoid" (= image_id)}], "dataset": "coco"}
        caption_style/captions.json        the same layout, the 5 references in
                                           styles.EVAL_STYLE ("2 red circles, 1 blue
                                           star."); only when data.synth.gallery_docs > 0
        scenes/{split}.json                {str(image_id): scene} ground truth of each
                                           eval image (for analysis; `scene.scene_from_dict`)
    manifest.json                          written last: {"version", "seed", "config",
                                           "counts", "shards": {stream: [paths]}, "eval":
                                           {"images", "vqa", "detail", "dialect", "corner", "textvqa",
                                           "text", "scenes", "caption", "caption_style"
                                           (with galleries)},
                                           "vocabulary_size", "files": {path: bytes}}

All paths in the manifest are relative to `out`.
"""
from mm1.data.synth.grammar import pretokenize, vocabulary
from mm1.data.synth.write import corpus_folder, corpus_is_complete, write_corpus

__all__ = ["corpus_folder", "corpus_is_complete", "pretokenize", "vocabulary", "write_corpus"]

"""`tango-af-publish`: puts a pipeline folder (model repo), an AF-AudioSet folder (dataset repo) or the Space (space
repo, linked to its model and datasets) on the Hub.

Each command first stages exactly the folder that will be uploaded (its card rendered, nothing else than what
users load, no path of the build machine in any of its text files), then runs `create_repo` + `upload_folder` on
it. With `--dry-run DIR` it stops after staging into
`DIR`, so what would be uploaded can be loaded and inspected offline:

    tango-af-publish model --folder tango-clap-ft --repo-id you/tango-clap --evaluation "AudioCaps test=eval/results.json"
    tango-af-publish dataset --folder af-audioset --repo-id you/AF-AudioSet
    tango-af-publish space --repo-id you/tango-af --model you/tango-clap --dataset you/AF-AudioSet
    tango-af-publish space --repo-id you/tango-af --dry-run build/space     # stage only

The token comes from the environment (`HF_TOKEN`) or the Hub login (`hf auth login`); it is never taken on the
command line (where other users of the machine could read it) and never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from huggingface_hub import HfApi, get_token

from pipelines.cli import UserError, add_debug_argument, command_line

from .pipeline_card import CONVERSION_RECORD_NAME, LORA_WEIGHTS_NAME, TRAINING_SUMMARY_NAME, write_pipeline_card

logger = logging.getLogger(__name__)

# Formats that are unpickled to load: never published (the project writes safetensors only).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Top-level files of a pipeline folder that users or its card need; component folders come from model_index.json.
MODEL_FILES = (
    "model_index.json",
    "pipeline.py",
    TRAINING_SUMMARY_NAME,
    CONVERSION_RECORD_NAME,
    LORA_WEIGHTS_NAME,
    # Prompts in the model's own vocabulary, which the Space offers as examples, and the generation settings it
    # starts from (`spaces/app.py`).
    "example_prompts.json",
    "generation_defaults.json",
)
# What an AF-AudioSet folder publishes: its shards, failure lists, statistics, plots and build records.
DATASET_ENTRIES = (
    "data",
    "failures",
    "assets",
    "stats.json",
    "build_config.json",
    "build_summary.json",
    "excluded_ids.txt",
)
SPACE_FILES = ("app.py", "requirements.txt")
SPACE_MODEL_DIR = "model"
SPACE_CONFIG_NAME = "space_config.json"
REPO_TYPES = ("model", "dataset", "space")


# Keys with which diffusers (`ConfigMixin`) and transformers (`PretrainedConfig`, tokenizers) record where a
# component was loaded from: every load sets them anew, so a published config gains nothing from them, and a
# pipeline loaded from a local folder and saved again carries the build machine's folders in them.
LOADED_FROM_KEYS = frozenset({"_name_or_path", "name_or_path"})
# Token tables, written by tokenizers: they record no paths, and entries such as "/tmp" are tokens, never to be
# rewritten or mistaken for paths.
TOKEN_TABLE_FILES = frozenset({"tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json"})
# Files read as text when a staged folder is checked for the build machine's paths.
TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".md", ".txt", ".py", ".yaml", ".yml", ".csv", ".toml", ".cfg"})


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name != "__pycache__"


def _copy(source: Path, target: Path) -> None:
    """Copies a file or a folder, leaving out hidden files (unfinished shards, `.cache`) and refusing pickles."""
    if source.is_dir():
        for child in sorted(source.rglob("*")):
            relative = child.relative_to(source)
            if child.is_file() and all(_visible(Path(part)) for part in relative.parts):
                _copy(child, target / relative)
        return
    if source.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"{os.fspath(source)!r} is a pickled file; the project publishes safetensors only.")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def machine_paths(sources: Iterable[str | os.PathLike] = ()) -> list[str]:
    """
    The folders whose absolute paths identify the build machine: the user's home, the temporary folder, the working
    folder, this project's folder and the folders being published, each as given and resolved (`/tmp` may be a
    link), longest first. The file system's root is never one.

    Args:
        sources (`Iterable[str | os.PathLike]`, *optional*): the folders being published.

    Returns:
        `list[str]`
    """
    candidates = [Path.home(), Path(tempfile.gettempdir()), Path.cwd(), Path(__file__).resolve().parents[1], *sources]
    roots = set()
    for candidate in candidates:
        for form in (os.path.abspath(candidate), os.path.realpath(candidate)):
            if Path(form).parent != Path(form):
                roots.add(form.rstrip("/\\"))
    return sorted(roots, key=len, reverse=True)


def _path_pattern(roots: Sequence[str]) -> re.Pattern:
    # A root, then the rest of the path up to what ends a path in prose or JSON (whitespace, quotes, brackets,
    # separators of lists and messages). A root inside a longer name or path ("/tmpfoo", ".../co/tmp/x" of a URL)
    # is not one.
    alternatives = "|".join(re.escape(root) for root in roots)
    name_char = r"[^\s\"'`<>|,;:()\[\]{}]"
    return re.compile(rf"(?<![\w.~:/\\-])(?:{alternatives})(?:[/\\]{name_char}*)*(?![/\\]|{name_char})")


def _is_absolute(text: str) -> bool:
    return PurePosixPath(text).is_absolute() or bool(PureWindowsPath(text).drive and PureWindowsPath(text).root)


def _local_name(path: str) -> str:
    return PureWindowsPath(path).name if "\\" in path else PurePosixPath(path).name


def _strip_value(value: Any, pattern: re.Pattern) -> Any:
    """`value` with the build machine's paths replaced by their last component, and `LOADED_FROM_KEYS` dropped."""
    if isinstance(value, dict):
        return {key: _strip_value(item, pattern) for key, item in value.items() if key not in LOADED_FROM_KEYS}
    if isinstance(value, list):
        return [_strip_value(item, pattern) for item in value]
    if isinstance(value, str):
        if _is_absolute(value) and _local_name(value.rstrip("/\\")) and os.path.exists(value):
            # A path of this machine outside the known roots (a data disk, say).
            return _local_name(value.rstrip("/\\"))
        return pattern.sub(lambda match: _local_name(match.group(0).rstrip("/\\")), value)
    return value


def strip_local_paths(folder: str | os.PathLike, roots: Sequence[str]) -> list[Path]:
    """
    Rewrites the JSON and JSON Lines files of a staged folder (token tables excepted) without the build machine's
    paths: `_name_or_path` / `name_or_path` entries are dropped, and every path under one of `roots` (or any existing
    absolute path given as a whole value) becomes its last component, so that records still name what they used
    ("captioner", "af-audioset") without saying where it lay.

    Args:
        folder (`str` or `os.PathLike`): the staged folder.
        roots (`Sequence[str]`): the folders that identify the machine (`machine_paths`).

    Returns:
        `list[Path]`: the files rewritten.
    """
    pattern = _path_pattern(roots)
    rewritten = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.name in TOKEN_TABLE_FILES or path.suffix not in (".json", ".jsonl"):
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            new = json.dumps(_strip_value(json.loads(text), pattern), indent=2, ensure_ascii=False) + "\n"
            changed = json.loads(new) != json.loads(text)
        else:
            lines = [
                json.dumps(_strip_value(json.loads(line), pattern), ensure_ascii=False) if line.strip() else line
                for line in text.splitlines()
            ]
            new = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
            changed = [json.loads(line) for line in lines if line.strip()] != [
                json.loads(line) for line in text.splitlines() if line.strip()
            ]
        if changed:
            path.write_text(new, encoding="utf-8")
            rewritten.append(path)
    if rewritten:
        names = ", ".join(str(path.relative_to(folder)) for path in rewritten)
        logger.info("Removed the build machine's paths from %s.", names)
    return rewritten


def check_no_local_paths(folder: str | os.PathLike, roots: Sequence[str]) -> None:
    """
    Refuses a staged folder if a text file (token tables excepted) still holds a path under one of `roots`: one in
    a card or in source code cannot be rewritten safely, so it is named instead.

    Raises:
        `ValueError`: naming the file and the path.
    """
    pattern = _path_pattern(roots)
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.name in TOKEN_TABLE_FILES or path.suffix not in TEXT_SUFFIXES:
            continue
        match = pattern.search(path.read_text(encoding="utf-8", errors="replace"))
        if match:
            raise ValueError(
                f"{os.fspath(path.relative_to(folder))} would publish {match.group(0)!r}, a path of this machine; "
                "remove it from the file it was copied or rendered from."
            )


@contextlib.contextmanager
def _staging(output: str | os.PathLike, sources: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """
    An empty staging folder, removed again if staging fails, so that no half-staged folder is ever left. Once
    staged, no text file in it may hold a path of the build machine (`check_no_local_paths`).
    """
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise ValueError(f"Staging folder {os.fspath(output)!r} is not empty; give a new or empty folder.")
    output.mkdir(parents=True, exist_ok=True)
    try:
        yield output
        check_no_local_paths(output, machine_paths([*sources, output]))
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise


def copy_pipeline_folder(folder: str | os.PathLike, output: str | os.PathLike) -> Path:
    """
    Copies what a pipeline folder (or a LoRA adapter folder) publishes: `model_index.json`, `pipeline.py`, the
    component folders it names, the adapter weights and the training / conversion records. Training checkpoints,
    logs and validation audio stay behind.

    Args:
        folder (`str` or `os.PathLike`): the folder.
        output (`str` or `os.PathLike`): where to copy it.

    Returns:
        `Path`: `output`.
    """
    folder, output = Path(folder), Path(output)
    index_path = folder / "model_index.json"
    if not index_path.is_file() and not (folder / LORA_WEIGHTS_NAME).is_file():
        raise ValueError(
            f"{os.fspath(folder)!r} is neither a pipeline folder (no model_index.json) nor a LoRA adapter folder "
            f"(no {LORA_WEIGHTS_NAME})."
        )
    components = []
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        components = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0]]
        missing = [name for name in components if not (folder / name).is_dir()]
        if missing:
            raise ValueError(f"{os.fspath(folder)!r} lacks the component folders {missing} named in model_index.json.")
    for name in list(MODEL_FILES) + components:
        if (folder / name).exists():
            _copy(folder / name, output / name)
    if index_path.is_file() and not (folder / "pipeline.py").exists():
        # A folder kept inside the project (the embedded default) leaves out its copy of the pipeline's source;
        # what is published must carry it for `trust_remote_code=True`.
        from pipelines.tango_clap import pipeline_tango_clap

        shutil.copyfile(pipeline_tango_clap.__file__, output / "pipeline.py")
    return output


def stage_model(
    folder: str | os.PathLike,
    output: str | os.PathLike,
    repo_id: str,
    evaluations: Sequence[tuple[str, dict[str, Any]]] = (),
    license: str | None = None,
) -> Path:
    """
    Stages a model repo: the pipeline folder's published files and its card (`model_cards.pipeline_card`).

    Args:
        folder (`str` or `os.PathLike`): a pipeline folder (or LoRA adapter folder) written by this project.
        output (`str` or `os.PathLike`): an empty or new folder to write.
        repo_id (`str`): the repo it will be, named in the card's usage snippet.
        evaluations (`Sequence[tuple[str, dict]]`, *optional*): `(dataset name, results.json contents)` pairs.
        license (`str`, *optional*): a Hub licence id; see `write_pipeline_card`.

    Returns:
        `Path`: the staged folder.
    """
    with _staging(output, [folder]) as output:
        copy_pipeline_folder(folder, output)
        strip_local_paths(output, machine_paths([folder, output]))
        write_pipeline_card(output, repo_id=repo_id, evaluations=evaluations, license=license)
    return output


def _check_dataset_complete(folder: Path) -> None:
    """
    Refuses a dataset folder that is not whole: no shards, or (for a folder the builder wrote) any unit that is not
    done, by the builder's own rule (`datasets_scripts.build.unfinished_units`: a unit is done only when its record
    and every output it lists exist and agree), so that a deleted or damaged shard is never published as a smaller
    dataset. An import of the released captions (`datasets_scripts.released`) has no units.
    """
    from datasets_scripts.build import read_build_config, unfinished_units
    from datasets_scripts.released import RELEASED_CAPTIONER

    if not list((folder / "data").glob("*.parquet")):
        raise UserError(f"{os.fspath(folder)!r} is not an AF-AudioSet folder: no data/*.parquet.")
    config_path = folder / "build_config.json"
    if not config_path.is_file():
        return
    try:
        if json.loads(config_path.read_text(encoding="utf-8")).get("captioner") == RELEASED_CAPTIONER:
            return
    except (ValueError, AttributeError):
        pass  # read_build_config names the damage
    read_build_config(folder, "folder")
    not_done = unfinished_units(folder)
    if not_done:
        listed = ", ".join(f"{unit} ({why})" for unit, why in list(not_done.items())[:10])
        raise UserError(
            f"AF-AudioSet folder {os.fspath(folder)!r} is unfinished: units {sorted(not_done)[:10]} of "
            f"{read_build_config(folder, 'folder').num_units} are not done: {listed}. Run the build again to finish "
            "it (or merge the machines' folders)."
        )


def stage_dataset(folder: str | os.PathLike, output: str | os.PathLike) -> Path:
    """
    Stages a dataset repo from a finished AF-AudioSet folder: its shards, failure lists and build records, and a
    freshly rendered card with statistics and plots (`model_cards.dataset_card`).

    Args:
        folder (`str` or `os.PathLike`): the AF-AudioSet folder.
        output (`str` or `os.PathLike`): an empty or new folder to write.

    Returns:
        `Path`: the staged folder.
    """
    from .dataset_card import write_dataset_card

    folder = Path(folder)
    _check_dataset_complete(folder)
    with _staging(output, [folder]) as output:
        for name in DATASET_ENTRIES:
            if (folder / name).exists():
                _copy(folder / name, output / name)
        strip_local_paths(output, machine_paths([folder, output]))
        write_dataset_card(output)
    return output


def stage_space(
    output: str | os.PathLike,
    model: str | None = None,
    datasets: Sequence[str] = (),
    models: Sequence[str] = (),
) -> Path:
    """
    Stages the Space repo: `app.py`, `requirements.txt`, the README (`model_cards.space_card`) and the model.

    Args:
        output (`str` or `os.PathLike`):
            An empty or new folder to write.
        model (`str`, *optional*):
            A pipeline folder, embedded as `model/` (the Space then starts without the Hub), or a Hub model id, which
            the app loads at start (written to `space_config.json` and linked). `None` embeds the project's default
            model (`pipelines.generate.save_default_model`).
        datasets (`Sequence[str]`, *optional*):
            Dataset repos to link, e.g. the AF-AudioSet repo the model was trained on.
        models (`Sequence[str]`, *optional*):
            Further model repos to link (an embedded folder's Hub repo, say).

    Returns:
        `Path`: the staged folder.
    """
    from .space_card import space_folder, write_space_card

    if model is not None and Path(model).exists() and not Path(model).is_dir():
        raise ValueError(f"--model {model!r} is a file; give a pipeline folder or a Hub model id.")
    local_model = [model] if model is not None and Path(model).is_dir() else []
    with _staging(output, local_model) as output:
        source = space_folder()
        for name in SPACE_FILES:
            _copy(source / name, output / name)
        linked = list(models)
        hub_model = None
        if model is None:
            from pipelines.generate import save_default_model

            save_default_model(output / SPACE_MODEL_DIR)
        elif Path(model).is_dir():
            copy_pipeline_folder(model, output / SPACE_MODEL_DIR)
        else:
            hub_model = model
            linked.insert(0, model)
            (output / SPACE_CONFIG_NAME).write_text(json.dumps({"model": model}, indent=2) + "\n")
        strip_local_paths(output, machine_paths([*local_model, output]))
        write_space_card(output, models=list(dict.fromkeys(linked)), datasets=list(datasets), model=hub_model)
    return output


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    repo_type: str,
    private: bool = False,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> str:
    """
    Creates the repo if needed and uploads the staged folder as one commit.

    Args:
        folder (`str` or `os.PathLike`): the staged folder.
        repo_id (`str`): `owner/name`, or `name` for the logged-in user.
        repo_type (`str`): `"model"`, `"dataset"` or `"space"` (a Gradio Space).
        private (`bool`, *optional*, defaults to `False`): create the repo private.
        commit_message (`str`, *optional*): the commit's message.
        api (`HfApi`, *optional*): the client; by default one using the environment's token or the Hub login.

    Returns:
        `str`: the URL of the commit.
    """
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}.")
    if api is None and get_token() is None:
        raise UserError("No Hub token: set HF_TOKEN or run `hf auth login` before publishing.")
    api = api or HfApi()
    url = api.create_repo(
        repo_id,
        repo_type=repo_type,
        private=private,
        exist_ok=True,
        space_sdk="gradio" if repo_type == "space" else None,
    )
    repo_id = url.repo_id
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type=repo_type,
        folder_path=os.fspath(folder),
        commit_message=commit_message or f"tango-af-publish {repo_type}",
    )
    logger.info(f"Published {os.fspath(folder)} to {repo_type} {repo_id}.")
    return str(getattr(commit, "commit_url", commit))


def publish_model(
    folder: str | os.PathLike,
    repo_id: str,
    evaluations: Sequence[tuple[str, dict[str, Any]]] = (),
    license: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    dry_run: str | os.PathLike | None = None,
    api: HfApi | None = None,
) -> Path | str:
    """Stages a pipeline folder with [`stage_model`] and uploads it; with `dry_run`, stages into it only."""
    return _publish(
        lambda out: stage_model(folder, out, repo_id, evaluations, license),
        repo_id,
        "model",
        private,
        commit_message,
        dry_run,
        api,
    )


def publish_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    commit_message: str | None = None,
    dry_run: str | os.PathLike | None = None,
    api: HfApi | None = None,
) -> Path | str:
    """Stages an AF-AudioSet folder with [`stage_dataset`] and uploads it; with `dry_run`, stages into it only."""
    return _publish(lambda out: stage_dataset(folder, out), repo_id, "dataset", private, commit_message, dry_run, api)


def publish_space(
    repo_id: str,
    model: str | None = None,
    datasets: Sequence[str] = (),
    models: Sequence[str] = (),
    private: bool = False,
    commit_message: str | None = None,
    dry_run: str | os.PathLike | None = None,
    api: HfApi | None = None,
) -> Path | str:
    """Stages the Space with [`stage_space`] and uploads it; with `dry_run`, stages into it only."""
    return _publish(
        lambda out: stage_space(out, model, datasets, models), repo_id, "space", private, commit_message, dry_run, api
    )


def _publish(stage, repo_id, repo_type, private, commit_message, dry_run, api) -> Path | str:
    if dry_run is not None:
        staged = stage(dry_run)
        logger.info(f"Dry run: {os.fspath(staged)} is what would be uploaded to {repo_type} {repo_id}.")
        return staged
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tango-af-publish-") as tmp:
        staged = stage(Path(tmp) / "repo")
        return push_folder(staged, repo_id, repo_type, private, commit_message, api)


def _evaluation(spec: str) -> tuple[str, dict[str, Any]]:
    """`NAME=PATH` or `PATH` (named by the results' own evaluation set) -> `(name, results)`."""
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    if not Path(path).is_file():
        raise ValueError(f"--evaluation {spec!r}: no results file at {path!r}.")
    results = json.loads(Path(path).read_text())
    if not isinstance(results, dict) or "metrics" not in results:
        raise ValueError(
            f"--evaluation {spec!r}: {path!r} has no `metrics` (write it with tango-af-evaluate-pipeline)."
        )
    return name or str((results.get("protocol") or {}).get("eval_set") or Path(path).parent.name), results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Publish tango-af artifacts to the Hugging Face Hub.")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--repo-id", required=True, help="owner/name (or name, for the logged-in user).")
        sub.add_argument("--private", action="store_true", help="Create the repo private.")
        sub.add_argument("--commit-message", default=None)
        sub.add_argument(
            "--dry-run", metavar="DIR", default=None, help="Only write the folder that would be uploaded."
        )

    model = commands.add_parser("model", help="A pipeline folder (or LoRA adapter folder) as a model repo.")
    model.add_argument("--folder", required=True)
    model.add_argument(
        "--evaluation",
        action="append",
        default=[],
        metavar="[NAME=]RESULTS_JSON",
        help="results.json of tango-af-evaluate-pipeline, shown in the card and its model-index (repeatable).",
    )
    model.add_argument("--license", default=None, help="Hub licence id (default: derived from the training data).")
    common(model)

    dataset = commands.add_parser("dataset", help="A finished AF-AudioSet folder as a dataset repo.")
    dataset.add_argument("--folder", required=True)
    common(dataset)

    space = commands.add_parser("space", help="The Gradio Space, linked to its model and datasets.")
    space.add_argument("--model", default=None, help="Hub model id (loaded by the Space) or folder (embedded).")
    space.add_argument("--dataset", action="append", default=[], help="Dataset repo to link (repeatable).")
    space.add_argument("--link-model", action="append", default=[], help="Further model repo to link (repeatable).")
    common(space)
    for sub in (model, dataset, space):
        add_debug_argument(sub)
    return parser


@command_line
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = dict(private=args.private, commit_message=args.commit_message, dry_run=args.dry_run)
    if args.command == "model":
        evaluations = [_evaluation(spec) for spec in args.evaluation]
        result = publish_model(args.folder, args.repo_id, evaluations, args.license, **options)
    elif args.command == "dataset":
        result = publish_dataset(args.folder, args.repo_id, **options)
    else:
        result = publish_space(args.repo_id, args.model, args.dataset, args.link_model, **options)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

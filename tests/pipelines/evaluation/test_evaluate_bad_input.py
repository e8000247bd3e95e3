"""What `tango-af-evaluate` and `tango-af-evaluate-pipeline` do with good and bad input: exit code 0 and the results
on stdout after a run; a user's mistake as one `error:` line naming the bad value, exit code 2, no traceback (the
traceback with `--debug`), before anything is loaded or written; clips too short for a backbone left out of its
metrics only; metrics the clips do not define reported as `null` with the reason, the others kept; non-finite audio
never written nor scored; and no file the commands did not write overwritten.

The installed scripts run in subprocesses; the many refusals run `main` in-process, with the loading of models
replaced by a sentinel: reaching it means every check before loading passed."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from pipelines.cli import UserError
from pipelines.evaluation import evaluate_audio, evaluate_pipeline
from pipelines.evaluation.evaluate_audio import IMPLEMENTATION, check_results_file
from pipelines.evaluation.metrics import KL_EPS

RATE = 16000


def tone(seconds: float, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(max(1, round(seconds * RATE))) / RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit code 2 and one `error:` line, the last one (progress bars and log lines may come before it)."""
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2, err
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def assert_no_repr_on_stderr(err: str) -> None:
    """Nothing but log lines and progress bars on stderr: not the Python repr of the results that `sys.exit(dict)`
    prints (`{'metrics': {...}, ...}`), nor any other dict."""
    assert "'metrics'" not in err, err[-2000:]
    assert not any(line.split("\r")[-1].lstrip().startswith("{") for line in err.splitlines()), err[-2000:]


# ---------------------------------------------------------------------------------------------- the installed scripts


def test_installed_evaluate_exits_0_with_the_results_on_stdout(audio_run):
    process = audio_run.process
    assert process.returncode == 0, process.stderr[-3000:]
    assert_no_repr_on_stderr(process.stderr)
    assert json.loads(process.stdout) == audio_run.results()


def test_installed_evaluate_pipeline_exits_0_with_the_metrics_on_stdout(pipeline_run):
    process = pipeline_run.process
    assert process.returncode == 0, process.stderr[-3000:]
    assert_no_repr_on_stderr(process.stderr)
    assert json.loads(process.stdout) == pipeline_run.results()["metrics"]


def test_installed_scripts_report_a_user_error_in_one_line(command, tmp_path):
    missing = tmp_path / "missing"
    process = command(
        "tango-af-evaluate", "--generated", str(missing), "--reference", str(tmp_path), "--vggish", str(tmp_path)
    )
    assert_one_line_error(process.returncode, process.stderr, f"--generated {str(missing)!r} does not exist")
    assert process.stderr.count("\n") == 1 and process.stdout == ""

    text = tmp_path / "set.txt"
    text.write_text("not a dataset")
    process = command(
        "tango-af-evaluate-pipeline", "--pipeline", str(tmp_path), "--eval_set", str(text),
        "--output_dir", str(tmp_path / "out"), "--vggish", str(tmp_path),
    )  # fmt: skip
    assert_one_line_error(process.returncode, process.stderr, f"--eval_set {str(text)!r} is a file")
    assert process.stderr.count("\n") == 1 and process.stdout == ""
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- refusals, in-process


class Loaded(Exception):
    """Raised instead of loading a model."""


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise Loaded

    # `load_backbones` checks that every folder exists, then loads each backbone with `_load_backbone`.
    monkeypatch.setattr(evaluate_audio, "_load_backbone", refuse)
    monkeypatch.setattr(evaluate_pipeline, "load_tango_pipeline", refuse)


def run(main, argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def places(evaluation_root, tmp_path):
    """Names for the arguments: `{refs}` (audio folder), `{set}` / `{splits}` (datasets), a `{wav}` file, the
    backbones' and the pipeline's folders, and `{tmp}`, which holds files no command wrote (`foreign.json`,
    `crowded/notes.txt`, a CSV without a caption column, a card with broken metadata)."""
    (tmp_path / "foreign.json").write_text('{"mine": true}\n')
    (tmp_path / "crowded").mkdir()
    (tmp_path / "crowded" / "notes.txt").write_text("mine\n")
    (tmp_path / "prompts_no_caption.csv").write_text("file,text\nyt0,a tone\n")
    (tmp_path / "bad_card.md").write_text("---\n: [unbalanced\n---\n# card\n")
    root = evaluation_root
    return {
        "refs": str(root / "ref_audio"),
        "wav": str(root / "ref_audio" / "yt0.wav"),
        "set": str(root / "eval_set"),
        "splits": str(root / "eval_splits"),
        "pipeline": str(root / "pipeline"),
        "cnn14": str(root / "cnn14"),
        "vggish": str(root / "vggish"),
        "clap": str(root / "clap"),
        "tmp": str(tmp_path),
    }


def fill(argv: list[str], places: dict[str, str]) -> list[str]:
    return [argument.format(**places) for argument in argv]


AUDIO = ["--generated", "{refs}", "--reference", "{refs}", "--vggish", "{vggish}", "--cache_dir", "{tmp}/cache"]
PIPELINE = [
    "--pipeline", "{pipeline}", "--eval_set", "{set}", "--key_column", "ytid", "--output_dir", "{tmp}/out",
    "--vggish", "{vggish}", "--cache_dir", "{tmp}/cache",
]  # fmt: skip


@pytest.mark.parametrize(
    "argv,fragments",
    [
        (["--generated", "{tmp}/missing"], ["--generated '{tmp}/missing' does not exist"]),
        (["--generated", "{wav}"], ["--generated '{wav}' is a file"]),
        (["--reference", "{tmp}/missing"], ["--reference '{tmp}/missing' does not exist"]),
        (["--reference", "{set}", "--audio_column", "sound"], ["--reference '{set}' has no column 'sound' (--audio_column)", "'caption'"]),
        (["--reference", "{set}", "--key_column", "id"], ["has no column 'id' (--key_column)", "'ytid'"]),
        (["--reference", "{splits}", "--split", "validation"], ["--reference '{splits}' has no split 'validation' (--split)", "['test']"]),
        (["--output", "{tmp}/foreign.json"], ["--output '{tmp}/foreign.json' exists and is not a results file of this command"]),
        (["--output", "{tmp}"], ["--output '{tmp}' is a folder"]),
        (["--output", "{wav}/results.json"], ["--output '{wav}/results.json' cannot be created", "is a file"]),
        (["--batch_size", "0"], ["--batch_size 0: must be a positive integer"]),
        (["--batch_size", "-3"], ["--batch_size -3: must be a positive integer"]),
        (["--cnn14", "{tmp}/no_cnn14"], ["--cnn14 '{tmp}/no_cnn14' does not exist"]),
        (["--cache_dir", "{tmp}/crowded"], ["--cache_dir '{tmp}/crowded' is a folder that already holds files this command did not write"]),
        (["--clap", "{clap}"], ["--clap needs --prompts"]),
        (["--clap", "{clap}", "--prompts", "{tmp}/missing.csv"], ["--prompts '{tmp}/missing.csv' cannot be read"]),
        (["--clap", "{clap}", "--prompts", "{tmp}/prompts_no_caption.csv"], ["--prompts '{tmp}/prompts_no_caption.csv' has no column 'caption'"]),
        (["--device", "foo"], ["--device 'foo' is not a device name"]),
    ],
)  # fmt: skip
def test_evaluate_refuses_bad_input_before_loading(argv, fragments, places, no_loading, capsys):
    code, out, err = run(evaluate_audio.main, [*fill(AUDIO, places), *fill(argv, places)], capsys)
    assert_one_line_error(code, err, *fill(fragments, places))
    assert out == ""
    assert (Path(places["tmp"]) / "foreign.json").read_text() == '{"mine": true}\n'
    assert not (Path(places["tmp"]) / "cache").exists()


def test_evaluate_needs_a_backbone(places, no_loading, capsys):
    code, _, err = run(evaluate_audio.main, ["--generated", places["refs"], "--reference", places["refs"]], capsys)
    assert_one_line_error(code, err, "Name at least one backbone: --cnn14, --vggish or --clap")


def test_debug_shows_the_traceback(places, no_loading, monkeypatch):
    """`--debug` (or `TANGO_AF_DEBUG=1`) lets the exception out, with its traceback, instead of one line."""
    audio = [*fill(AUDIO, places), "--generated", places["tmp"] + "/missing"]
    pipeline = [*fill(PIPELINE, places), "--eval_set", places["tmp"] + "/missing"]
    with pytest.raises(UserError, match="--generated '.*missing' does not exist"):
        evaluate_audio.main([*audio, "--debug"])
    with pytest.raises(UserError, match="--eval_set '.*missing' does not exist"):
        evaluate_pipeline.main([*pipeline, "--debug"])
    monkeypatch.setenv("TANGO_AF_DEBUG", "1")
    with pytest.raises(UserError, match="does not exist"):
        evaluate_audio.main(audio)


@pytest.mark.parametrize(
    "argv,fragments",
    [
        (["--eval_set", "{tmp}/missing"], ["--eval_set '{tmp}/missing' does not exist"]),
        (["--eval_set", "{wav}"], ["--eval_set '{wav}' is a file"]),
        (["--eval_set", "{refs}"], ["--eval_set '{refs}' could not be loaded as a dataset"]),
        (["--caption_column", "text"], ["--eval_set '{set}' has no column 'text' (--caption_column)", "'caption'"]),
        (["--key_column", "id"], ["has no column 'id' (--key_column)"]),
        (["--audio_column", "sound"], ["has no column 'sound' (--audio_column)"]),
        (["--eval_set", "{splits}", "--split", "validation"], ["--eval_set '{splits}' has no split 'validation' (--split)"]),
        (["--pipeline", "{tmp}/no_pipeline"], ["--pipeline '{tmp}/no_pipeline' does not exist"]),
        (["--num_inference_steps", "0"], ["--num_inference_steps 0: must be a positive integer"]),
        (["--limit", "0"], ["--limit 0: must be a positive integer"]),
        (["--batch_size", "-1"], ["--batch_size -1: must be a positive integer"]),
        (["--audio_length_in_s", "nan"], ["--audio_length_in_s nan: must be a positive number of seconds"]),
        (["--audio_length_in_s", "-2"], ["--audio_length_in_s -2.0: must be a positive number of seconds"]),
        (["--guidance_scale", "inf"], ["--guidance_scale inf: must be a finite number"]),
        (["--output_dir", "{wav}"], ["--output_dir '{wav}' is a file, not a folder"]),
        (["--output_dir", "{tmp}/crowded"], ["--output_dir '{tmp}/crowded' is a folder that already holds files this command did not write"]),
        (["--model_card", "{tmp}/bad_card.md"], ["--model_card '{tmp}/bad_card.md' is not a readable model card"]),
        (["--model_card", "{tmp}"], ["--model_card '{tmp}' is a folder"]),
        (["--cache_dir", "{tmp}/crowded"], ["--cache_dir '{tmp}/crowded' is a folder that already holds files"]),
        (["--vggish", "{tmp}/no_vggish"], ["--vggish '{tmp}/no_vggish' does not exist"]),
    ],
)  # fmt: skip
def test_evaluate_pipeline_refuses_bad_input_before_loading_or_writing(argv, fragments, places, no_loading, capsys):
    code, out, err = run(evaluate_pipeline.main, [*fill(PIPELINE, places), *fill(argv, places)], capsys)
    assert_one_line_error(code, err, *fill(fragments, places))
    assert out == ""
    assert not (Path(places["tmp"]) / "out").exists() and not (Path(places["tmp"]) / "cache").exists()
    assert sorted(p.name for p in (Path(places["tmp"]) / "crowded").iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------------------- never overwritten


def test_results_file_is_replaced_only_when_this_command_wrote_it(audio_run, tmp_path):
    assert check_results_file(audio_run.output) == audio_run.output
    assert audio_run.results()["protocol"]["implementation"] == IMPLEMENTATION
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"protocol": {"implementation": "someone else"}}))
    with pytest.raises(UserError, match="exists and is not a results file of this command"):
        check_results_file(other)


# ---------------------------------------------------------------------------------------------- too short, undefined


def test_short_clips_and_metrics_the_clips_do_not_define(places, tmp_path, capsys, caplog):
    """Per backbone: Cnn14 embeds from 4960 samples at 16 kHz, VGGish from 15600 (one 0.96 s example)."""
    generated, reference = tmp_path / "gen", tmp_path / "ref"
    generated.mkdir(), reference.mkdir()
    sf.write(generated / "a.wav", tone(2.1, 500), RATE)  # two VGGish examples
    sf.write(generated / "half.wav", tone(0.5), RATE)  # long enough for Cnn14 only
    sf.write(generated / "tiny.wav", np.full(1, 0.3, np.float32), RATE)  # one sample
    (generated / "README.txt").write_text("generated by hand\n")
    sf.write(reference / "a.wav", tone(2.1, 600), RATE)
    sf.write(reference / "b.wav", np.full(1, 0.3, np.float32), RATE)
    output = tmp_path / "new" / "folder" / "results.json"  # its folders are created

    code, out, err = run(
        evaluate_audio.main,
        ["--generated", str(generated), "--reference", str(reference), "--cnn14", places["cnn14"],
         "--vggish", places["vggish"], "--no_cache", "--output", str(output)],
        capsys,
    )  # fmt: skip

    assert code == 0, err
    result = json.loads(output.read_text())
    assert json.loads(out) == result
    clips = result["clips"]
    assert clips["generated"]["too_short"] == {"cnn14": ["tiny"], "vggish": ["half", "tiny"]}
    assert clips["reference"]["too_short"] == {"cnn14": ["b"], "vggish": ["b"]}
    assert clips["generated"]["skipped"] == {"not_audio": ["README.txt"]} and clips["reference"]["skipped"] == {}
    assert clips["generated"]["clips"] == 3 and clips["generated"]["silent"] == []
    assert clips["embedded"]["cnn14"] == {"generated": 2, "reference": 1}
    assert clips["embedded"]["vggish"]["generated_examples"] == clips["embedded"]["vggish"]["reference_examples"] == 2
    metrics, reasons = result["metrics"], result["not_computed"]
    # One reference clip for Cnn14: no covariance, so no FD; 2 generated clips: no 10-split IS. KL needs pairs only.
    assert metrics["FD"] is None and reasons["FD"] == "needs at least 2 clips on each side; the reference side has 1"
    assert metrics["IS"] is metrics["IS_std"] is None and "needs at least 10 clips" in reasons["IS"]
    assert clips["kl_pairs"] == 1 and clips["unpaired_generated"] == ["half"]
    # Gibbs' inequality bounds audioldm_eval's KL (eps inside the log) below by -log(1 + 527 eps).
    assert metrics["KL"] >= -math.log1p(527 * KL_EPS) and math.isfinite(metrics["KL_sigmoid"])
    assert math.isfinite(metrics["FAD"]) and metrics["FAD"] > 0  # two 0.96 s examples on each side
    assert set(reasons) == {"FD", "IS"}
    assert "FD not computed" in caplog.text and "IS not computed" in caplog.text


# ---------------------------------------------------------------------------------------------- non-finite audio


class NanForOnePrompt:
    """Stands in for the pipeline: a tone per prompt, NaN samples for the prompt it is told to break (as a float16
    overflow would give)."""

    sampling_rate = RATE

    def __init__(self, broken: str):
        self.broken = broken
        self.prompts: list[str] = []

    def to(self, device):
        return self

    def check_inputs(self, **kwargs):
        pass

    def __call__(self, prompts, generator, output_type, audio_length_in_s, **kwargs):
        assert output_type == "np" and len(generator) == len(prompts)
        self.prompts += prompts
        audios = np.stack([tone(audio_length_in_s, 300 + 100 * i) for i in range(len(prompts))])
        for row, prompt in enumerate(prompts):
            if prompt == self.broken:
                audios[row, ::7] = np.nan
        return SimpleNamespace(audios=audios)


def test_non_finite_audio_is_neither_written_nor_scored(places, monkeypatch, tmp_path, capsys, caplog):
    pipe = NanForOnePrompt("a tone number 1")
    monkeypatch.setattr(evaluate_pipeline, "load_tango_pipeline", lambda *args, **kwargs: pipe)
    output = tmp_path / "out"

    code, out, err = run(
        evaluate_pipeline.main,
        [*fill(PIPELINE, places), "--limit", "3", "--audio_length_in_s", "1.0", "--num_inference_steps", "1"],
        capsys,
    )

    assert code == 0, err
    assert pipe.prompts == ["a tone number 0", "a tone number 1", "a tone number 2"]
    assert sorted(p.name for p in (output / "generated").iterdir()) == ["yt0.wav", "yt2.wav"]
    assert "'yt1' ('a tone number 1') holds NaN or infinity: not written, not scored" in caplog.text
    results = json.loads((output / "results.json").read_text())
    assert results["clips"]["generated"]["skipped"] == {"non_finite": ["yt1"]}
    assert results["clips"]["generated"]["clips"] == 2
    assert json.loads(out) == results["metrics"] and math.isfinite(results["metrics"]["FAD"])

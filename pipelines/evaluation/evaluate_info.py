"""What the `evaluate` modules of `evaluate_metrics/` share: their `MetricInfo` over vectors of floats."""

import datasets
import evaluate


def vector_metric_info(description: str, citation: str, inputs_description: str, paired: bool) -> evaluate.MetricInfo:
    """A `MetricInfo` whose inputs are float vectors: `predictions`, and `references` too when `paired`."""
    columns = ("predictions", "references") if paired else ("predictions",)
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features({name: datasets.Sequence(datasets.Value("float64")) for name in columns}),
    )

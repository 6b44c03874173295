"""Reproducible benchmarks: time to 99 % on MNIST, the lesson's loop, batch speed, the best recipe.

`run` runs them and returns JSON-ready dicts, each naming the machine (`cnnlab.machine`);
`report` saves them under benchmarks/results and writes BENCHMARKS.md's generated section.
`from cnnlab import bench; bench.speedrun(...)` reaches both.
"""

from cnnlab.bench.report import (
    MARK_BEGIN,
    MARK_END,
    load_results,
    markdown_tables,
    result_path,
    save_result,
    update_markdown,
)
from cnnlab.bench.run import (
    batches_benchmark,
    best_run,
    data_load_seconds,
    lesson_baseline,
    process_start_seconds,
    speedrun,
    stats,
)

__all__ = [
    "MARK_BEGIN",
    "MARK_END",
    "batches_benchmark",
    "best_run",
    "data_load_seconds",
    "lesson_baseline",
    "load_results",
    "markdown_tables",
    "process_start_seconds",
    "result_path",
    "save_result",
    "speedrun",
    "stats",
    "update_markdown",
]

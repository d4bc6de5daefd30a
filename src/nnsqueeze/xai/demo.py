"""``nnsqueeze explain --demo digits``: the digits CNN explained, and the explanations evaluated.

Trains the demo CNN on scikit-learn's 8x8 digits (or loads it from ``digits_cnn.nnsq`` in the output
directory, stored losslessly on the first run), then writes

* ``digits_why.png``: for a few test digits, what speaks for the true class, for the runner-up class,
  and for "the true class rather than the runner-up" (red for, blue against);
* ``digits_methods.png``: the same digits under each method;
* ``aopc.md``: region perturbation (one region per pixel) for every method under the zero, noise and
  blur baselines, with a random ranking as the reference.

Without matplotlib the grids are replaced by one plain PNG per digit and map.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nnsqueeze.errors import MissingDependencyError
from nnsqueeze.xai.attribution import Attributor, gradient, gradient_x_input, random_relevance, saliency
from nnsqueeze.xai.composites import get_composite
from nnsqueeze.xai.evaluation import PerturbationScore, compare, format_table
from nnsqueeze.xai.heatmap import heatmap_grid, save_heatmap

__all__ = ["ExplainDemoReport", "run_digits_demo"]

Log = Callable[[str], None]
MODEL_FILE = "digits_cnn.nnsq"
SHOWN = 6


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class ExplainDemoReport:
    """What the demo measured and wrote."""

    accuracy: float
    composite: str
    trained: bool
    images: int
    conservation: float
    perturbation: list[PerturbationScore]
    table: str
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"digits CNN: test accuracy {self.accuracy:.4f} ({'trained' if self.trained else 'loaded'})",
            f"composite {self.composite}: median |sum R / logit - 1| = {self.conservation:.3g}",
            f"region perturbation over {self.images} correctly classified test digits "
            "(AOPC MoRF / ABPC, higher is better):",
            self.table,
            "wrote: " + ", ".join(str(f) for f in self.files),
        ]
        return "\n".join(lines)


def _model(out_dir: Path, seed: int, epochs: int | None, log: Log) -> tuple[nn.Module, bool]:
    import nnsqueeze
    from nnsqueeze.zoo import digits

    path = out_dir / MODEL_FILE
    if path.exists() and epochs is None:
        log(f"loading {path}...")
        model = digits.build_model()
        state = nnsqueeze.load_state_dict(path)
        model.load_state_dict(state, strict=True)
        return model.eval(), False
    log("training the digits CNN...")
    model, _ = digits.train_digits_cnn(seed, epochs or digits.DEFAULT_EPOCHS)
    nnsqueeze.compress(model.state_dict(), path, lossless=True, metadata={"arch": "digits"})
    return model.eval(), True


def _methods(composite: str) -> dict[str, Callable[[nn.Module, Tensor, Tensor], Tensor]]:
    def lrp(name: str) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
        def explain(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
            with Attributor(model, get_composite(name)) as attributor:
                return attributor(x, target).relevance

        return explain

    names = dict.fromkeys([composite, "epsilon_plus_flat", "epsilon_gamma_box"])
    out = {f"LRP {n}": lrp(n) for n in names}
    out["gradient"] = lambda m, x, t: gradient(m, x, t).relevance
    out["|gradient|"] = lambda m, x, t: saliency(m, x, t).relevance
    out["gradient × input"] = lambda m, x, t: gradient_x_input(m, x, t).relevance
    return out


def _grids(model: nn.Module, composite: str, x: Tensor, y: Tensor, out_dir: Path, log: Log) -> list[Path]:
    with torch.no_grad():
        logits = model(x)
    runner_up = logits.scatter(1, y[:, None], float("-inf")).argmax(1)
    with Attributor(model, get_composite(composite)) as attributor:
        why = attributor(x, y).relevance[:, 0]
        why_not = attributor(x, runner_up).relevance[:, 0]
        seed = torch.eye(10)[y] - torch.eye(10)[runner_up]
        contrast = attributor(x, seed).relevance[:, 0]
    methods = _methods(composite)
    per_method = torch.stack([fn(model, x, y)[:, 0] for fn in methods.values()], 1)
    rows = [f"{int(a)} (runner-up {int(b)})" for a, b in zip(y, runner_up, strict=True)]
    try:
        return [
            heatmap_grid(
                out_dir / "digits_why.png",
                x[:, 0],
                torch.stack([why, why_not, contrast], 1),
                row_titles=rows,
                col_titles=["digit", "why the class", "why the runner-up", "class, not runner-up"],
                title=f"LRP {composite}: red speaks for, blue against",
            ),
            heatmap_grid(
                out_dir / "digits_methods.png",
                x[:, 0],
                per_method,
                row_titles=[str(int(v)) for v in y],
                col_titles=["digit", *methods],
                title="the true class, explained by each method (each map on its own scale)",
                per_map_scale=True,
            ),
        ]
    except MissingDependencyError:
        log("matplotlib is not installed: writing plain PNGs instead of grids")
        files = []
        for i in range(x.shape[0]):
            for name, maps in (("why", why), ("why_not", why_not), ("contrast", contrast)):
                files.append(save_heatmap(out_dir / f"digit{i}_{name}.png", maps[i]))
        return files


def run_digits_demo(
    out_dir: Path,
    *,
    composite: str = "epsilon_plus_flat",
    images: int = 200,
    steps: int | None = None,
    seed: int = 0,
    epochs: int | None = None,
    log: Log = _stderr,
) -> ExplainDemoReport:
    """Runs the demo (see the module docstring); ``epochs`` forces (re)training for that many epochs,
    ``steps`` limits the evaluated points of each perturbation curve (default: all 65)."""
    from nnsqueeze.zoo import accuracy as accuracy_of
    from nnsqueeze.zoo import digits, torch_threads

    out_dir.mkdir(parents=True, exist_ok=True)
    get_composite(composite)  # fail early on an unknown name
    with torch_threads(1):
        model, trained = _model(out_dir, seed, epochs, log)
        data = digits.load_data(seed)
        accuracy = accuracy_of(model, data.x_test, data.y_test)
        with torch.no_grad():
            correct = torch.nonzero(model(data.x_test).argmax(1) == data.y_test).squeeze(1)[:images]
        x, y = data.x_test[correct], data.y_test[correct]
        log("writing heatmaps...")
        files = _grids(model, composite, x[:SHOWN], y[:SHOWN], out_dir, log)
        log("region perturbation...")
        relevances = {name: fn(model, x, y) for name, fn in _methods(composite).items()}
        relevances["random"] = random_relevance(x, torch.Generator().manual_seed(seed))
        with Attributor(model, get_composite(composite)) as attributor:
            output, relevance = attributor(x, y)
        logit = output.gather(1, y[:, None]).squeeze(1)
        conservation = float(np.median((relevance.flatten(1).sum(1) / logit - 1).abs().numpy()))
        rows = compare(
            model, x, y, relevances, baselines=("zero", "noise", "blur"), region=1, num_steps=steps, sigma=1.0
        )
    table = format_table(rows)
    (out_dir / "aopc.md").write_text(
        f"# Region perturbation on digits ({len(y)} correctly classified test digits, "
        "one region per pixel)\n\n"
        f"Test accuracy {accuracy:.4f}. AOPC (most relevant first) / ABPC; higher is better.\n\n{table}\n"
    )
    files.append(out_dir / "aopc.md")
    return ExplainDemoReport(accuracy, composite, trained, len(y), conservation, rows, table, files)

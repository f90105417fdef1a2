"""``none-sweep train CONFIG.yaml``: one training run, defended or not, with per-epoch progress lines.

Writes ``OUT/config.yaml`` (the resolved config, runnable as-is), ``OUT/metrics.json`` and
``OUT/checkpoint.pt`` (after every epoch, so ``--resume`` continues an interrupted run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ..config import dump_config, parse_overrides
from ..errors import CheckpointError, ConfigError
from ..experiment import load_experiment


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one model on (possibly poisoned) data, with or without NONE")
    p.add_argument("config", nargs="?", help="experiment YAML (default: Fashion-MNIST, BadNets, small CNN, NONE)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set defense.enabled=false (repeatable)",
    )
    p.add_argument("--out", help="output folder (default: runs/<run id>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--baseline", help="metrics.json of the undefended run, for clean_acc_drop / DER / RIR")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, parse_overrides(args.overrides))
    baseline = _read_baseline(args.baseline) if args.baseline else None
    out = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    checkpoint = out / "checkpoint.pt"
    if args.resume and not checkpoint.is_file():
        raise ConfigError(f"--resume: no checkpoint at {checkpoint}; run without --resume to start fresh")
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")

    from ..train import ExperimentRun, compare_to_baseline

    say = (lambda _line: None) if args.quiet else (lambda line: print(line, flush=True))
    say(
        f"none-sweep train: {cfg.attack.name} on {cfg.data.name}, {cfg.model.name}, "
        f"defense {'on' if cfg.defense.enabled else 'off'} → {out}"
    )
    experiment = ExperimentRun(cfg, progress=say)
    if args.resume:
        try:
            experiment.load_checkpoint(checkpoint)
        except CheckpointError as exc:  # the file is left as it is, for inspection
            raise CheckpointError(f"{exc}; move it away and run without --resume to start fresh") from None
        say(f"resumed from {checkpoint} after epoch {experiment.next_index}")
    try:
        for _report in experiment.epochs():
            experiment.save_checkpoint(checkpoint)
    except KeyboardInterrupt:
        print(f"interrupted; resume with: none-sweep train {args.config or ''} --out {out} --resume", file=sys.stderr)
        raise
    result = experiment.result()
    payload: dict[str, Any] = {
        **result.metrics,
        "attack": result.attack,
        "rounds": result.rounds,
        "history": result.history,
        "config": result.config,
    }
    if baseline is not None:
        payload.update(compare_to_baseline(result.metrics, baseline))
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=float), encoding="utf-8")
    say(_summary(payload, out))
    return 0


def _read_baseline(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--baseline {path}: cannot read metrics.json ({exc})") from None
    if not isinstance(data, dict) or "clean_acc" not in data:
        raise ConfigError(f"--baseline {path}: not a none-sweep metrics.json (no clean_acc)")
    return data


def _summary(m: dict[str, Any], out: Path) -> str:
    def pct(x: Any) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}%"

    detection = (  # no poison, nothing to detect: no figures (see train.metrics.detection_scores)
        f"poison precision {pct(m['poison_precision'])} recall {pct(m['poison_recall'])}  "
        if "poison_recall" in m
        else ""
    )
    lines = [
        f"clean_acc {pct(m['clean_acc'])}  asr {pct(m['asr'])}  robust_acc {pct(m['robust_acc'])}",
        f"{detection}neurons reset {m['neurons_reset']}  removed {m['removed_samples']}  "
        f"epochs {m['epochs']}  wall {m['wall_s']:.1f}s",
    ]
    if "clean_acc_drop" in m:
        trade = "".join(f" {name.upper()} {m[name]:.3f}" for name in ("der", "rir") if m.get(name) is not None)
        lines.append(
            f"vs baseline: clean_acc_drop {pct(m.get('clean_acc_drop'))}"
            + (f" asr_reduction {pct(m['asr_reduction'])}" if m.get("asr_reduction") is not None else "")
            + trade
        )
    lines.append(f"wrote {out / 'metrics.json'} and {out / 'config.yaml'}")
    return "\n".join(lines)

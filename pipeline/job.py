"""One labelling run: plan, lock the output, label the shards, write the run record, summarise."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from tqdm import tqdm

from pipeline.output_lock import LockHeldError, OutputLock
from pipeline.config import ConfigError, LabelConfig
from pipeline.run import RunPlan, ShardOutcome, clean_temp_files, missing_shards, plan_run, summary_text, write_run_record
from pipeline.shards import ShardListError, shard_id

log = logging.getLogger(__name__)


def _progress(plan: RunPlan, enabled: bool) -> tuple[Callable[[int], None], Callable[[ShardOutcome], None], Callable[[], None]]:
    done_shards = [0]
    bar = tqdm(total=None, unit="sample", dynamic_ncols=True, disable=not enabled, file=sys.stderr,
               desc=f"0/{len(plan.todo)} shards")

    def on_samples(n: int) -> None:
        bar.update(n)

    def on_outcome(outcome: ShardOutcome) -> None:
        done_shards[0] += 1
        if done_shards[0] and bar.n:
            bar.total = int(bar.n / done_shards[0] * len(plan.todo))
        bar.set_description(f"{done_shards[0]}/{len(plan.todo)} shards")
        if outcome.error:
            bar.write(f"shard {outcome.shard} failed: {outcome.error}")

    return on_samples, on_outcome, bar.close


def run_job(
    config: LabelConfig,
    *,
    runner: str = "ray",
    ray_address: str | None = None,
    progress: bool = True,
    init_ray: Callable[[str | None], None] | None = None,
) -> int:
    """Run the job; return the process exit code (0 only if every shard is done)."""
    from teacher.checkpoints import CheckpointError, validate_teacher_spec

    try:
        validate_teacher_spec(config.teacher, config.allow_pickle_checkpoint)
        plan = plan_run(config)
    except (ConfigError, ShardListError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - storage/credential errors become one sentence
        print(f"error: cannot read --input {config.input} or --output {config.output} "
              f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
              "check the paths, and for s3:// the AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID)", file=sys.stderr)
        return 2
    print(f"{len(plan.shards)} input shard(s): {len(plan.skipped)} already done, {len(plan.todo)} to label "
          f"(config {plan.config_hash}, run {plan.run_id})", file=sys.stderr)
    lock = OutputLock(plan.config.output)
    outcomes: list[ShardOutcome] = []
    try:
        lock.acquire(plan.run_id, plan.config_hash)
    except LockHeldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"error: cannot write to --output {config.output}: {exc}", file=sys.stderr)
        return 2
    try:
        lock.start_heartbeat(30.0)
        if plan.todo:
            removed = clean_temp_files(plan.config.output)
            if removed:
                log.info("removed %d temporary file(s) left by an earlier run", removed)
            on_samples, show_outcome, close = _progress(plan, progress)
            reported: list[ShardOutcome] = []

            def on_outcome(outcome: ShardOutcome) -> None:
                reported.append(outcome)
                show_outcome(outcome)

            try:
                outcomes = _label(plan, runner, ray_address, init_ray, on_samples, on_outcome)
            except TeacherLoadError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                close()
                write_run_record(plan, reported, finished=False)
                done = sum(1 for o in reported if o.manifest)
                print(f"interrupted: {done} shard(s) of {len(plan.todo)} were labelled in this run and are kept; "
                      f"run the same command again to label the rest", file=sys.stderr)
                return 130
            finally:
                close()
            outcomes += _never_finished(plan, outcomes)
        record = write_run_record(plan, outcomes, finished=True)
    finally:
        lock.release()
    new_samples = sum(o.manifest.samples for o in outcomes if o.manifest)
    print(summary_text(record, new_samples), file=sys.stderr)
    return 1 if record.shards_failed else 0


def _never_finished(plan: RunPlan, outcomes: list[ShardOutcome]) -> list[ShardOutcome]:
    """A failed outcome for every shard a runner returned nothing for: such a shard was not
    labelled, and the exit code must say so."""
    return [ShardOutcome(shard_id(url), error=f"shard {shard_id(url)} ({url}) was not labelled: the runner ended without it")
            for url in missing_shards(plan, outcomes)]


class TeacherLoadError(RuntimeError):
    """The teacher could not be loaded on a worker (bad checkpoint, no network for a hub id)."""


def _label(plan, runner, ray_address, init_ray, on_samples, on_outcome) -> list[ShardOutcome]:
    if runner == "inprocess":
        from pipeline.inprocess import run_inprocess
        from teacher.load import load_teacher

        cfg = plan.config
        if (cfg.device or "").startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise TeacherLoadError(f"--device {cfg.device} but torch sees no CUDA GPU on this machine; use --device cpu, "
                                       "or leave --device unset to use the GPU when there is one")
        try:
            teacher = load_teacher(cfg.teacher, cfg.grounding_settings(), device=cfg.device, allow_pickle=cfg.allow_pickle_checkpoint,
                                   fast=cfg.fast_teacher, precision=cfg.precision)
        except Exception as exc:  # noqa: BLE001 - one sentence for the user, not a traceback
            raise TeacherLoadError(f"cannot load teacher {cfg.teacher}: {_last_line(exc)}") from exc
        workers = cfg.cpu_workers if cfg.cpu_workers is not None else max(1, len(os.sched_getaffinity(0)) - 1)
        return run_inprocess(plan, teacher, on_samples=on_samples, on_outcome=on_outcome, cpu_workers=workers)
    from pipeline.ray_runner import RayRunner

    if init_ray is not None:
        init_ray(ray_address)
    try:
        runner_ = RayRunner(plan)
    except ConfigError as exc:  # a flag the cluster cannot serve
        raise TeacherLoadError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - the actor's load error, as one sentence
        raise TeacherLoadError(f"cannot load teacher {plan.config.teacher}: {_last_line(exc)}") from exc
    return runner_.run(on_samples=on_samples, on_outcome=on_outcome)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else exc.__class__.__name__

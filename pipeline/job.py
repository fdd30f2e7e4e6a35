"""One labelling run, start to end: plan, lock the output, label the shards with a runner, write
the run record, print the summary; the exit code says how it went. `run_command` is the whole
command line (`glip-label`, `jobs/label_cc12m.py`, and `glip-evaluate --run`)."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from tqdm import tqdm

from pipeline.config import ConfigError, LabelConfig, build_config
from pipeline.flags import parse_job_args, setting_values
from pipeline.io.lock import LockHeldError, OutputLock
from pipeline.plan import RunPlan, ShardOutcome, clean_temp_files, missing_shards, plan_run
from pipeline.run_record import summary_text, write_run_record
from pipeline.runners import TeacherLoadError, make_runner
from pipeline.stages.inputs import ShardListError, shard_id
from schemas.errors import describe_error

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED_SHARDS, EXIT_BAD_INPUT, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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


def _plan(config: LabelConfig) -> RunPlan | int:
    """The run's plan, or the exit code of a bad flag, input, output or teacher (said in one sentence)."""
    from teacher.checkpoints import CheckpointError, validate_teacher_spec

    try:
        validate_teacher_spec(config.labels.teacher, config.policy.allow_pickle_checkpoint)
        return plan_run(config)
    except (ConfigError, ShardListError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - storage/credential errors become one sentence
        print(f"error: cannot read --input {config.input} or --output {config.output} ({describe_error(exc)}); "
              "check the paths, and for s3:// the AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID)", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_job(config: LabelConfig, *, runner: str = "ray", ray_address: str | None = None, progress: bool = True) -> int:
    """Run the job; return the process exit code (0 only if every shard is done)."""
    plan = _plan(config)
    if isinstance(plan, int):
        return plan
    print(f"{len(plan.shards)} input shard(s): {len(plan.skipped)} already done, {len(plan.todo)} to label "
          f"(config {plan.config_hash}, run {plan.run_id})", file=sys.stderr)
    lock = OutputLock(plan.config.output)
    try:
        lock.acquire(plan.run_id, plan.config_hash)
    except LockHeldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except OSError as exc:
        print(f"error: cannot write to --output {config.output}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        lock.start_heartbeat(30.0)
        labelled = _label(plan, runner, ray_address, progress) if plan.todo else ([], {})
        if isinstance(labelled, int):
            return labelled
        outcomes, placement = labelled
        record = write_run_record(plan, outcomes, finished=True, placement=placement)
    finally:
        lock.release()
    new_samples = sum(o.manifest.samples for o in outcomes if o.manifest)
    print(summary_text(record, new_samples), file=sys.stderr)
    return EXIT_FAILED_SHARDS if record.shards_failed else EXIT_OK


def _label(plan: RunPlan, runner: str, ray_address: str | None, progress: bool) -> tuple[list[ShardOutcome], dict] | int:
    """Label the plan's shards: the outcomes, with a failure for each shard the runner left, and
    the runner's placement; or the exit code of a teacher that cannot load or of Ctrl-C."""
    removed = clean_temp_files(plan.config.output)
    if removed:
        log.info("removed %d temporary file(s) left by an earlier run", removed)
    on_samples, show_outcome, close = _progress(plan, progress)
    reported: list[ShardOutcome] = []

    def on_outcome(outcome: ShardOutcome) -> None:
        reported.append(outcome)
        show_outcome(outcome)

    started = None
    try:
        started = make_runner(runner, plan, ray_address=ray_address)
        outcomes = started.run(on_samples, on_outcome)
    except TeacherLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        close()
        write_run_record(plan, reported, finished=False, placement=started.placement() if started else None)
        done = sum(1 for o in reported if o.manifest)
        print(f"interrupted: {done} shard(s) of {len(plan.todo)} were labelled in this run and are kept; "
              f"run the same command again to label the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        close()
    # A shard a runner returned nothing for was not labelled, and the exit code must say so.
    outcomes += [ShardOutcome(shard_id(url), error=f"shard {shard_id(url)} ({url}) was not labelled: the runner ended without it")
                 for url in missing_shards(plan, outcomes)]
    return outcomes, started.placement()


def run_command(argv: list[str] | None = None) -> int:
    """The labelling job from its command line: flags (and --config) -> settings -> `run_job`;
    the exit code (`pipeline.flags.JOB_EPILOG`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_job_args(argv)
    try:
        config = build_config(setting_values(args), args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_job(config, runner=args.runner, ray_address=args.ray_address, progress=not args.no_progress)

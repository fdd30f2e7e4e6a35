"""The labelling pipeline, from input shards to committed outputs, and the tools that read them.

    job.py          one run: plan, lock, runner, run record, summary (jobs/label_cc12m.py calls it)
    config.py       the settings, in sections; flags.py builds the command line from them
    plan.py         which shards to label, which are done (resume), what each manifest records
    run_record.py   _runs/RUN_ID.json and the summary
    stages/         one shard's stages, pure: list inputs, read, prepare (parse, decode, batch), write
    runners/        what drives the stages: on Ray (actors) or in one process
    io/             the output layout and lock, committed shards (bytes go through `storage/`)
    training/       the loader a student trains from
    tools/          verify, inspect, gallery, export, evaluate against gold, sample shards

The tools are used as console scripts (`glip-verify`, ...) or `python -m pipeline.tools.X`; the
training loader is imported from `pipeline.training`. ARCHITECTURE.md at the project root tells
the whole story.
"""

"""`newsclf tune`: options -> TuneConfig -> the search -> its table and the train command."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from newsclf.artifacts import RunFolder
from newsclf.cli.console import console
from newsclf.cli.options import changed, refuse, values, with_options
from newsclf.cli.train import run_training
from newsclf.errors import InputError
from newsclf.options import option_specs
from newsclf.training import NewsTrainer, TrainingConfig
from newsclf.tuning import SEARCHED, TuneConfig

# Every training option but those the search sets: each trial and --train-best use them.
RECIPE_OPTIONS = TrainingConfig.option_specs(exclude=(*SEARCHED, "resume"))
SEARCH_OPTIONS = option_specs(TuneConfig)


@with_options([*RECIPE_OPTIONS, *SEARCH_OPTIONS])
def tune(
    context: typer.Context,
    train_best: Annotated[
        bool,
        typer.Option(
            help="Then train the best recipe on all training rows into the run folder.",
            rich_help_panel="Search",
        ),
    ] = False,
    **options: Any,
) -> None:
    """Search learning rate, batch size, epochs, weight decay and warm-up with Optuna on the
    validation metric (carved from train); the test data is never seen by the search."""
    from newsclf.cli.progress import TuneProgress
    from newsclf.cli.render import tune_summary
    from newsclf.tuning import tune as search

    training = TrainingConfig.from_options(values(options, RECIPE_OPTIONS))
    search_values = values(options, SEARCH_OPTIONS)
    if search_values["resume"]:
        if training.output_dir is None:
            raise InputError("--resume needs --output-dir: the run whose search to continue.")
        kept = ("output_dir", "trials", "timeout", "resume")
        others = [s for s in [*RECIPE_OPTIONS, *SEARCH_OPTIONS] if s.name not in kept]
        refuse(
            changed(context, options, others),
            "--resume continues with the search's saved settings.",
        )
        saved = TuneConfig.load(RunFolder(training.output_dir).tune_config_file)
        config = TuneConfig(
            **{
                **saved.__dict__,
                "training": saved.training.replace(output_dir=training.output_dir),
                "trials": search_values["trials"],
                "timeout": search_values["timeout"],
                "resume": True,
            }
        )
        console.print("Resuming with the search's saved settings (--trials and --timeout apply).")
    else:
        config = TuneConfig(training=training, **search_values)
    if train_best and config.run.best_dir.exists():
        raise InputError(
            f"--train-best: {config.run_dir} already holds a finished run; choose another "
            "--output-dir."
        )
    searched = ", ".join(config.searched()) or "nothing"
    console.print(
        f"newsclf tune {config.training.model}: {config.trials} trials ({config.sampler}), "
        f"maximising validation {config.training.metric}; searching {searched}; study in "
        f"{config.tune_dir}",
        markup=False,
        highlight=False,
    )
    with TuneProgress(console, config.training.metric, config.searched()) as progress:
        result = search(config, on_trial=progress.update)
    console.print(tune_summary(result))
    console.print(result.train_command, soft_wrap=True, highlight=False, markup=False)
    if train_best:
        run_training(NewsTrainer(result.train_config))

"""newsclf's on-disk formats: the run folder, the export folder, the preprocessing settings that
travel with a model, and the model card."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "PreprocessingConfig": "preprocessing",
        "PREPROCESSING_FILE": "preprocessing",
        "RunFolder": "run_folder",
        "PARITY_ROWS": "run_folder",
        "latest_run": "run_folder",
        "resolve_checkpoint": "run_folder",
        "write_parity_sample": "run_folder",
        "read_parity_sample": "run_folder",
        "write_ensemble_description": "run_folder",
        "ExportFolder": "export_folder",
        "VARIANT_FILES": "export_folder",
        "MANIFEST_FILE": "export_folder",
        "REPORT_FILE": "export_folder",
        "is_export": "export_folder",
        "latest_export": "export_folder",
        "write_manifest": "export_folder",
        "variant_flag": "export_folder",
        "file_sha256": "export_folder",
        "model_card": "card",
        "write_model_card": "card",
    },
)

if TYPE_CHECKING:
    from newsclf.artifacts.card import model_card, write_model_card
    from newsclf.artifacts.export_folder import (
        MANIFEST_FILE,
        REPORT_FILE,
        VARIANT_FILES,
        ExportFolder,
        file_sha256,
        is_export,
        latest_export,
        variant_flag,
        write_manifest,
    )
    from newsclf.artifacts.preprocessing import PREPROCESSING_FILE, PreprocessingConfig
    from newsclf.artifacts.run_folder import (
        PARITY_ROWS,
        RunFolder,
        latest_run,
        read_parity_sample,
        resolve_checkpoint,
        write_ensemble_description,
        write_parity_sample,
    )

"""newsclf's on-disk formats: the run folder, the export folder and the registry of its variants,
the preprocessing settings that travel with a model, and the model card."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "PreprocessingConfig": "preprocessing",
        "PREPROCESSING_FILE": "preprocessing",
        "RunFolder": "run_folder",
        "PARITY_ROWS": "run_folder",
        "CALIBRATION_ROWS": "run_folder",
        "latest_run": "run_folder",
        "resolve_checkpoint": "run_folder",
        "write_parity_sample": "run_folder",
        "write_calibration_sample": "run_folder",
        "write_validation_rows": "run_folder",
        "read_validation_rows": "run_folder",
        "read_calibration_sample": "run_folder",
        "read_parity_sample": "run_folder",
        "write_ensemble_description": "run_folder",
        "ExportFolder": "export_folder",
        "DamagedVariant": "export_folder",
        "MANIFEST_FILE": "export_folder",
        "REPORT_FILE": "export_folder",
        "is_export": "export_folder",
        "latest_export": "export_folder",
        "write_manifest": "export_folder",
        "file_sha256": "export_folder",
        "read_model_config": "model_files",
        "label_names_of": "model_files",
        "load_checked_tokenizer": "model_files",
        "VARIANTS": "variants",
        "VariantSpec": "variants",
        "VariantPlan": "variants",
        "LeftOut": "variants",
        "AutoChoice": "variants",
        "Candidate": "variants",
        "auto_order": "variants",
        "choose_auto": "variants",
        "check_variant_name": "variants",
        "check_variants_request": "variants",
        "default_variants": "variants",
        "plan_variants": "variants",
        "model_card": "card",
        "write_model_card": "card",
    },
)

if TYPE_CHECKING:
    from newsclf.artifacts.card import model_card, write_model_card
    from newsclf.artifacts.export_folder import (
        MANIFEST_FILE,
        REPORT_FILE,
        DamagedVariant,
        ExportFolder,
        file_sha256,
        is_export,
        latest_export,
        write_manifest,
    )
    from newsclf.artifacts.model_files import (
        label_names_of,
        load_checked_tokenizer,
        read_model_config,
    )
    from newsclf.artifacts.preprocessing import PREPROCESSING_FILE, PreprocessingConfig
    from newsclf.artifacts.run_folder import (
        CALIBRATION_ROWS,
        PARITY_ROWS,
        RunFolder,
        latest_run,
        read_calibration_sample,
        read_parity_sample,
        read_validation_rows,
        resolve_checkpoint,
        write_calibration_sample,
        write_ensemble_description,
        write_parity_sample,
        write_validation_rows,
    )
    from newsclf.artifacts.variants import (
        VARIANTS,
        AutoChoice,
        Candidate,
        LeftOut,
        VariantPlan,
        VariantSpec,
        auto_order,
        check_variant_name,
        check_variants_request,
        choose_auto,
        default_variants,
        plan_variants,
    )

"""The registry of an export's variants: every fact about a variant, said once.

Each `VariantSpec` names the variant's file, the runtime and devices it runs on, the parity
rule it is held to, its place in `--variant auto`'s order on each device, the padding its
runtime needs, whether a row's label is independent of its batch, what the export needs to
make it (its converter, extra packages) and the pip extra that brings them. The exporter, the
export folder's checks, the parity check, the classifier and `newsclf env` all read it; a new
variant is one entry here plus its converter.

Converters live in `newsclf.export` (this module sits below it), named as "module:function":
a generator that takes a `ConversionJob` and yields (file written, recipe name or None) once
per recipe it tries; the exporter keeps the first attempt that passes the parity check.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from newsclf.errors import InputError

Runtime = Literal["onnxruntime", "openvino"]
# strict: max |Δ logit| within the export's tolerance and identical labels at every shape;
# labels: the same label as PyTorch on at least the required share of the parity texts.
ParityRule = Literal["strict", "labels"]
VariantDevice = Literal["cpu", "cuda"]
DEVICES: tuple[VariantDevice, ...] = ("cuda", "cpu")

# The module each runtime is imported as.
RUNTIME_MODULES: dict[str, str] = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


@dataclass(frozen=True)
class VariantSpec:
    """One variant of an export."""

    name: str
    file: str  # in the export folder
    runtime: Runtime
    # Where it runs, the device it is made for first: `export --device auto` checks it there
    # when that device works, and `classify` never sends it anywhere else.
    devices: tuple[VariantDevice, ...]
    parity: ParityRule
    # Its speed rank on each device (0 fastest): `--variant auto` takes the first variant, in
    # this order, that is batch-invariant, held by the export and whose runtime is installed.
    auto_rank: Mapping[str, int]
    # Whether a row gets the same numbers whatever else is in its batch.
    batch_invariant: bool
    # "module:function" of its converter; None for fp32, the graph every variant comes from.
    converter: str | None
    description: str
    # Rows are padded to their length rounded up to a multiple of this (None: to the batch's
    # longest row); see `padded_widths` in newsclf.inference.
    padding_bucket: int | None = None
    # A weights file beside the graph (OpenVINO IR's .bin).
    data_file: str | None = None
    # Modules the export needs beyond the runtime (NNCF to quantize).
    export_needs: tuple[str, ...] = ()
    # Whether making it needs training texts to calibrate on (the run's calibration sample or
    # --calibration-file).
    calibrates: bool = False
    # The pip extra that brings the runtime and `export_needs` where they are not default.
    extra: str | None = None
    # Made by a plain `newsclf export --onnx` only if it is the first batch-invariant variant
    # of a device whose packages are installed; `always` variants are always made.
    always: bool = False

    @property
    def flag(self) -> str:
        """The export option that adds it."""
        return f"--variants +{self.name}"

    @property
    def runtime_module(self) -> str:
        return RUNTIME_MODULES[self.runtime]

    def runs_on(self, device: str) -> bool:
        return device in self.devices

    def missing(self, *, export: bool) -> list[str]:
        """Modules not installed here that running it (or, with `export`, making it) needs."""
        needed = [self.runtime_module, *(self.export_needs if export else ())]
        return [m for m in needed if not module_installed(m)]

    def install_hint(self) -> str:
        return f"pip install 'newsclf[{self.extra}]'" if self.extra else "pip install newsclf"


def module_installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


_CONVERT = "newsclf.export.convert"

VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec(
            name="fp32",
            file="model.onnx",
            runtime="onnxruntime",
            devices=("cpu", "cuda"),
            parity="strict",
            auto_rank={"cuda": 2, "cpu": 4},
            batch_invariant=True,
            converter=None,
            description="torch.onnx.export's graph, fp32",
            always=True,
        ),
        VariantSpec(
            name="optimized",
            file="model_optimized.onnx",
            runtime="onnxruntime",
            devices=("cpu", "cuda"),
            parity="strict",
            auto_rank={"cuda": 1, "cpu": 3},
            batch_invariant=True,
            converter=f"{_CONVERT}:make_optimized",
            description="ONNX Runtime's transformer fusions, fp32",
        ),
        VariantSpec(
            name="fp16",
            file="model_fp16.onnx",
            runtime="onnxruntime",
            devices=("cuda", "cpu"),
            parity="labels",
            auto_rank={"cuda": 0},
            batch_invariant=True,
            converter=f"{_CONVERT}:make_fp16",
            description="fused for GPUs, fp16 weights and compute, for CUDA",
        ),
        VariantSpec(
            name="int8",
            file="model_int8.onnx",
            runtime="onnxruntime",
            devices=("cpu", "cuda"),
            parity="labels",
            # Fast on the CPU, but it scales each batch by its own range: never picked by auto.
            auto_rank={"cpu": 2},
            batch_invariant=False,
            converter=f"{_CONVERT}:make_int8",
            description="dynamic int8 MatMuls, for the CPU",
        ),
        VariantSpec(
            name="openvino",
            # The fp32 file, run by OpenVINO: a variant of its own because it is checked on
            # its own.
            file="model.onnx",
            runtime="openvino",
            devices=("cpu",),
            parity="labels",
            auto_rank={"cpu": 1},
            batch_invariant=True,
            converter=f"{_CONVERT}:make_openvino",
            description="the fp32 graph on OpenVINO (bf16 on CPUs with AMX or AVX512-BF16)",
            # OpenVINO's result for a row depends on the width it is padded to (by up to 2e-3
            # in logits: benchmarks/NOTES.md), not on the other rows of its batch.
            padding_bucket=8,
            extra="openvino",
        ),
        VariantSpec(
            name="openvino-int8",
            file="model_openvino_int8.xml",
            runtime="openvino",
            devices=("cpu",),
            parity="labels",
            auto_rank={"cpu": 0},
            batch_invariant=True,
            converter=f"{_CONVERT}:make_openvino_int8",
            description="static int8 calibrated on training rows (NNCF), on OpenVINO",
            padding_bucket=8,
            data_file="model_openvino_int8.bin",
            export_needs=("nncf",),
            calibrates=True,
            extra="openvino",
        ),
    )
}


def check_variant_name(option: str, value: object, *, allow_auto: bool = False) -> None:
    """Raises:
    InputError: `value` is not a variant name (nor `auto` where that is allowed)."""
    names = (["auto"] if allow_auto else []) + list(VARIANTS)
    if value not in names:
        raise InputError(f"{option} must be one of {', '.join(names)}, not {value!r}.")


def auto_order(device: str) -> list[VariantSpec]:
    """The variants ranked on `device`, fastest first (batch-invariant or not)."""
    ranked = [s for s in VARIANTS.values() if device in s.auto_rank and s.runs_on(device)]
    return sorted(ranked, key=lambda s: s.auto_rank[device])


# -- --variant auto ----------------------------------------------------------------------------

Verdict = Literal["picked", "not batch-invariant", "not in the export", "not installed", "slower"]


@dataclass(frozen=True)
class Candidate:
    """One variant of auto's order on a device, and why it was or was not taken."""

    variant: str
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class AutoChoice:
    """What `--variant auto` takes on a device from the variants an export holds, and why."""

    device: str
    variant: str | None
    candidates: tuple[Candidate, ...]

    @property
    def faster(self) -> list[Candidate]:
        """Batch-invariant variants faster than the one taken that this machine or this
        export lacks."""
        before = []
        for candidate in self.candidates:
            if candidate.verdict == "picked":
                break
            if candidate.verdict in ("not in the export", "not installed"):
                before.append(candidate)
        return before

    def hint(self) -> str | None:
        """One line naming the faster variant auto would have taken, and how to get it."""
        if not self.faster:
            return None
        first = self.faster[0]
        taken = f" than {self.variant}" if self.variant else ""
        return f"{first.variant} would run faster here{taken}: {first.reason}"

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "variant": self.variant,
            "candidates": [
                {"variant": c.variant, "verdict": c.verdict, "reason": c.reason}
                for c in self.candidates
            ],
        }


def choose_auto(device: str, held: Collection[str]) -> AutoChoice:
    """`--variant auto` on `device` for an export holding the variants `held`: the first
    variant of `auto_order(device)` that is batch-invariant, held, and whose runtime is
    installed; every other candidate with the reason it was passed over."""
    candidates: list[Candidate] = []
    picked: str | None = None
    for spec in auto_order(device):
        if not spec.batch_invariant:
            candidates.append(
                Candidate(
                    spec.name,
                    "not batch-invariant",
                    "a row's label can change with the other rows of its batch: it runs only "
                    f"with --variant {spec.name}",
                )
            )
        elif picked is not None:
            candidates.append(Candidate(spec.name, "slower", f"ranked after {picked}"))
        elif spec.name not in held:
            missing = spec.missing(export=True)
            how = f"newsclf export --onnx {spec.flag}"
            if missing:
                how = f"{spec.install_hint()}, then {how}"
            candidates.append(
                Candidate(spec.name, "not in the export", f"the export lacks it ({how})")
            )
        elif missing := spec.missing(export=False):
            candidates.append(
                Candidate(
                    spec.name,
                    "not installed",
                    f"the export holds it but {', '.join(missing)} is not installed "
                    f"({spec.install_hint()})",
                )
            )
        else:
            picked = spec.name
            candidates.append(
                Candidate(
                    spec.name, "picked", f"the fastest batch-invariant variant held for {device}"
                )
            )
    return AutoChoice(device, picked, tuple(candidates))


# -- what an export makes -----------------------------------------------------------------------


@dataclass(frozen=True)
class LeftOut:
    """A default variant this export could not make here, and what it made instead."""

    variant: str
    device: str
    reason: str
    instead: str | None

    def message(self) -> str:
        instead = f"; {self.device} gets {self.instead} instead" if self.instead else ""
        return f"{self.variant} left out: {self.reason}{instead}"


@dataclass(frozen=True)
class VariantPlan:
    """The variants an export makes, in registry order, and the defaults it had to leave out."""

    variants: tuple[str, ...]
    left_out: tuple[LeftOut, ...] = field(default_factory=tuple)


def _cannot_make(spec: VariantSpec, calibration_texts: bool) -> str | None:
    """Why `spec` cannot be made here, or None."""
    missing = spec.missing(export=True)
    if missing:
        return f"it needs {', '.join(missing)}, not installed here ({spec.install_hint()})"
    if spec.calibrates and not calibration_texts:
        return (
            "it is calibrated on training texts and the checkpoint has none (no "
            "calibration_sample.jsonl in its run folder): pass --calibration-file"
        )
    return None


def default_variants(calibration_texts: bool = True) -> VariantPlan:
    """What a plain `newsclf export --onnx` makes: the `always` variants, and for each device
    the first batch-invariant variant of auto's order that can be made here (the one auto
    would take there). A faster one that cannot be made (packages missing, or no training
    texts to calibrate on: `calibration_texts` False) is left out, with the reason."""
    chosen = {s.name for s in VARIANTS.values() if s.always}
    left_out: list[LeftOut] = []
    for device in DEVICES:
        skipped: LeftOut | None = None
        for spec in auto_order(device):
            if not spec.batch_invariant:
                continue
            reason = _cannot_make(spec, calibration_texts)
            if reason is None:
                chosen.add(spec.name)
                if skipped is not None:
                    skipped = LeftOut(skipped.variant, device, skipped.reason, spec.name)
                break
            skipped = skipped or LeftOut(spec.name, device, reason, None)
        if skipped is not None:
            left_out.append(skipped)
    return VariantPlan(tuple(n for n in VARIANTS if n in chosen), tuple(left_out))


def plan_variants(requested: Sequence[str], calibration_texts: bool = True) -> VariantPlan:
    """The variants an export makes for `--variants`: empty for the defaults; `+NAME` and
    `-NAME` add to or leave out of the defaults; plain names are the whole list (the fp32
    graph is always made: every variant comes from it). `calibration_texts`: whether the
    checkpoint has training texts to calibrate on.

    Raises:
        InputError: an unknown name, a mix of plain and signed names, leaving out an `always`
            variant, or a variant asked for that cannot be made here (packages missing, or no
            calibration texts).
    """
    check_variants_request(requested)
    signed = [r for r in requested if r[:1] in "+-"]
    left_out: tuple[LeftOut, ...] = ()
    if not requested or signed:
        plan = default_variants(calibration_texts)
        added = {r[1:] for r in requested if r.startswith("+")}
        removed = {r[1:] for r in requested if r.startswith("-")}
        names = (set(plan.variants) | added) - removed
        left_out = tuple(lo for lo in plan.left_out if lo.variant not in removed | added)
    else:
        added = set(requested)
        names = set(added)
    names |= {s.name for s in VARIANTS.values() if s.always}
    for name in sorted(added):
        reason = _cannot_make(VARIANTS[name], calibration_texts)
        if reason is not None:
            raise InputError(f"--variants: the {name} variant cannot be made: {reason}.")
    return VariantPlan(tuple(n for n in VARIANTS if n in names), left_out)


def check_variants_request(requested: Sequence[str]) -> None:
    """Raises:
    InputError: `--variants` names an unknown variant, mixes plain and signed names, or
    leaves out a variant that is always made."""
    signed = [r for r in requested if r[:1] in "+-"]
    if signed and len(signed) != len(requested):
        raise InputError(
            f"--variants {','.join(requested)}: give either the whole list (fp16,optimized) "
            "or changes to the defaults (+int8,-fp16), not both."
        )
    for item in requested:
        name = item.lstrip("+-")
        check_variant_name("--variants", name)
        if VARIANTS[name].always and item.startswith("-"):
            raise InputError(
                f"--variants {item}: the {name} graph is always made (every variant comes from it)."
            )

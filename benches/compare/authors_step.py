"""Times the authors' own training step (github:Entodi/fusion), for the three-way comparison.

    python authors_step.py step --fusion PATH [--objective CR-XX-CC] [--dims 2|3] [--batch 64]
                                [--modalities 2] [--threads 2] [--warmup 3] [--reps 10]
                                [--optimizer catalyst|torch|none]

PATH is a checkout of github:Entodi/fusion. Nothing of it is copied: this script puts the
checkout on `sys.path`, builds the objects the authors' pretraining configurations name and
times what their `CatalystRunner.handle_batch` does per training batch (gradients set to None,
`model(x)`, `criterion(output)`, backward, `optimizer.step()`, the loss read back, a softmax of
each `z` for the logged metrics):

- model: `fusion.model.dim.Dim` with the `DcganEncoder` architecture and the arguments of
  `configs/experiment/model/{dim,architecture/dcgan_encoder}.yaml` (dim_h 32, dim_l 64,
  xavier_uniform initialisation, a linear latent head with one hidden layer) and
  `dim_cls` `["8_1"]` (2D, `two_view_mnist_pretraining.yaml`) or `["8_2"]` (3D,
  `oasis_pretraining.yaml`);
- criterion: `SpatialMultiDim` (2D) or `VolumetricMultiDim` (3D) with the InfoNCE estimator,
  the scaled dot-product critic, the tanh clip at 20 and the L2 penalty, the objective's modes
  with weight 1 each (`configs/experiment/criterion/*_multi_dim.yaml`);
- optimiser: catalyst 22.4's `RAdam` at lr 4e-4 (`configs/experiment/optimizer/radam.yaml`),
  the optimiser the authors' `optimizer_provider` registers. Install catalyst without its
  dependencies (`pip install catalyst==22.4 --no-deps`); only its `radam.py` file is loaded,
  by path, since the package's `__init__` imports much more than the optimiser.

`--optimizer torch` swaps in `torch.optim.RAdam` (what the port uses) and `--optimizer none`
times the step without the update, to tell the optimiser's share of the difference from the
model's and the loss's.

The authors pin torch 2.0.1; the checkout runs unchanged on the torch this Python has (its
version goes into the JSON line). Inputs are uniform [0, 1) like `torch_step.py`'s. Prints one
JSON line in the format of `torch_step.py` and mmssl's `train_step` example.
"""

import argparse
import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import torch

from timing import add_step_arguments, report_step, time_ms


def load_radam():
    spec = importlib.util.find_spec("catalyst")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "catalyst is not installed in this Python: the authors' optimiser is catalyst's "
            "RAdam (pip install catalyst==22.4 --no-deps)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "contrib/optimizers/radam.py"
    if not path.is_file():
        sys.exit(f"{path}: no such file (catalyst 22.4 has it; this catalyst does not)")
    module_spec = importlib.util.spec_from_file_location("authors_radam", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.RAdam


def build(fusion: Path, objective: str, modalities: int, dims: int):
    if not (fusion / "fusion/model/dim/dim.py").is_file():
        sys.exit(f"{fusion}: not a checkout of github:Entodi/fusion (no fusion/model/dim/dim.py)")
    sys.path.insert(0, str(fusion))
    from fusion.criterion.loss.multi_dim import SpatialMultiDim, VolumetricMultiDim
    from fusion.model.dim import Dim
    from fusion.utils import Setting

    modes = objective.split("-")
    for mode in modes:
        if mode not in ("CR", "XX", "CC", "RR"):
            sys.exit(f"`{objective}`: the authors' MultiDim has the modes CR, XX, CC and RR")
    dim_cls = ["8_1"] if dims == 2 else ["8_2"]
    size = 32 if dims == 2 else 64
    architecture_params = dict(
        dim_in=[1] * modalities,
        dim_h=32,
        dim_l=64,
        dim_cls=dim_cls,
        input_dim=dims,
        input_size=size,
        weights_initialization_type="xavier_uniform",
        conv_layer_class="Conv2d" if dims == 2 else "Conv3d",
        norm_layer_class="BatchNorm2d" if dims == 2 else "BatchNorm3d",
    )
    # The authors' constructors print their layer table; keep stdout for the JSON line.
    with contextlib.redirect_stdout(io.StringIO()):
        model = Dim(
            sources=list(range(modalities)),
            architecture="DcganEncoder",
            architecture_params=architecture_params,
            latent_head_params=dict(use_linear=True, num_h_layers=1),
        )
        estimator = Setting(
            class_type="InfoNceEstimator",
            args=dict(
                critic_setting=Setting(class_type="ScaledDotProduct", args={}),
                clip_setting=Setting(class_type="TahnClip", args=dict(clip_value=20.0)),
                penalty_setting=Setting(class_type="L2Penalty", args={}),
            ),
        )
        loss_class = SpatialMultiDim if dims == 2 else VolumetricMultiDim
        criterion = loss_class(
            dim_cls=dim_cls, estimator_setting=estimator, modes=modes, weights=[1.0] * len(modes)
        )
    side = [1, size, size] if dims == 2 else [1, size, size, size]
    return model, criterion, side


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["step"])
    p.add_argument("--fusion", required=True, type=Path, help="a checkout of github:Entodi/fusion")
    add_step_arguments(p)
    p.add_argument(
        "--optimizer",
        choices=["catalyst", "torch", "none"],
        default="catalyst",
        help="catalyst's RAdam (the authors'), torch.optim.RAdam, or no update",
    )
    # Accepted so that run.py can pass the same arguments to every implementation.
    p.add_argument("--locations", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model, criterion, side = build(args.fusion.resolve(), args.objective, args.modalities, args.dims)
    if args.optimizer == "catalyst":
        optimizer = load_radam()(model.parameters(), lr=4e-4)
    elif args.optimizer == "torch":
        optimizer = torch.optim.RAdam(model.parameters(), lr=4e-4)
    else:
        optimizer = None
    # The runners hand the model a dict of the sources' batches keyed by the source id.
    xs = {str(i): torch.rand([args.batch] + side) for i in range(args.modalities)}

    def run():
        # CatalystRunner.handle_batch for a training batch (no scheduler in these configs).
        for param in model.parameters():
            param.grad = None
        output = model(xs)
        loss, _ = criterion(output, None)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        loss.item()
        for z in output.z.values():
            torch.softmax(z, dim=1)

    names = ("optimizer", "what", "objective", "modalities", "dims", "batch")
    report_step(time_ms(run, args.warmup, args.reps), args, names, impl="authors")

if __name__ == "__main__":
    main()

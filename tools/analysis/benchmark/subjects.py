"""The measured subjects and their synthetic workload.

* ``'sera'``: the whole segmentor (text encoder, adapted backbone, fusion
  neck, head, post-processing);
* ``'bare'``: the text encoder and the backbone with its adapters removed
  (``adapter=None``), i.e. the cost of the frozen encoders alone
  (:class:`BareEncoders`).

Both are built with random weights of the configured geometry (no
download). :class:`StepBuilder` turns a subject into closures that run one
inference or one training step on synthetic batches.
"""
import copy
from contextlib import nullcontext
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .plan import SUBJECTS, bare_encoders_cfg

EXPRESSIONS = (
    'the red car on the left',
    'man in a blue shirt holding an umbrella',
    'second bowl from the right',
    'the dog sitting next to the bicycle behind the bench',
    'top left corner of the table',
    'small white cup',
    'person partially hidden by the door frame',
    'the larger of the two green balls',
)


class BareEncoders(nn.Module):
    """Text encoder + backbone (no adapters) of a built segmentor.

    ``forward(inputs (B, 3, H, W), texts: list of B str)`` returns the
    backbone grids ``[(B, C_i, h_i, w_i)]``.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.data_preprocessor = segmentor.data_preprocessor
        self.text_encoder = segmentor.text_encoder
        self.backbone = segmentor.backbone

    def forward(self, inputs: torch.Tensor,
                texts: Sequence[str]) -> List[torch.Tensor]:
        return self.backbone(inputs, self.text_encoder(list(texts)))

def build_subject(cfg_model: dict, subject: str,
                  device: str = 'cpu') -> nn.Module:
    """Build the segmentor (``'sera'``) or its bare encoders (``'bare'``)
    with random weights of the configured geometry, on ``device``."""
    from sera_mm.utils import setup_runtime
    setup_runtime()  # mmcv.ops fallback, checkpoint safe globals
    from sera_mm.registry import MODELS
    from sera_mm.utils import register_all_modules
    from sera_mm.utils.config_utils import random_init_cfg
    if subject not in SUBJECTS:
        raise ValueError(f'subject must be one of {SUBJECTS}, got '
                         f'{subject!r}')
    register_all_modules()
    cfg = random_init_cfg(cfg_model, force=True)
    if subject == 'bare':
        cfg = bare_encoders_cfg(cfg)
    model = MODELS.build(cfg)
    if subject == 'bare':
        model = BareEncoders(model)
    return model.to(device)

def synthetic_batch(batch: int,
                    size: int,
                    with_gt: bool = False,
                    seed: int = 0) -> dict:
    """A data batch like the test pipeline's: ``inputs`` list of uint8
    (3, size, size) images, ``data_samples`` SegDataSamples with varied
    expressions and letterbox metainfo (no padding)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    if batch < 1 or size < 1:
        raise ValueError(f'batch and size must be >= 1, got batch={batch}, '
                         f'size={size}')
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(batch):
        inputs.append(
            torch.randint(0, 256, (3, size, size), generator=gen,
                          dtype=torch.uint8))
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(size, size),
                pad_shape=(size, size),
                ori_shape=(size, size),
                img_padding_size=[0, 0, 0, 0],
                scale_factor=(1.0, 1.0),
                flip=False,
                flip_direction=None,
                text=EXPRESSIONS[(i + seed * batch) % len(EXPRESSIONS)],
                sent_id=i))
        if with_gt:
            mask = torch.zeros((1, size, size), dtype=torch.int64)
            mask[:, size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
            sample.gt_sem_seg = PixelData(data=mask)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)

class StepBuilder:
    """Builds the closures that run one subject's inference / training step
    on synthetic batches.

    Args:
        model: a segmentor or :class:`BareEncoders`.
        device: torch device string.
        amp: autocast (bfloat16 on CPU, float16 on CUDA).
        channels_last: model and inputs in channels_last.
        compile: run the segmentor's ``loss`` / ``predict`` (the bare
            encoders' ``forward``) through ``torch.compile`` (default
            options); the first call compiles.
        optim_wrapper: the config's ``optim_wrapper`` (plain dict): the
            training step then updates through the optimizer training
            builds (the constructor ``tools/train.py`` uses unless the
            config names one: parameter groups, gradient clipping, the
            optimizer's options). None: a plain AdamW over every trainable
            tensor (one group, no clipping; the bare encoders' stand-in).
    """

    def __init__(self,
                 model: nn.Module,
                 device: str = 'cpu',
                 amp: bool = False,
                 channels_last: bool = False,
                 compile: bool = False,
                 optim_wrapper: Optional[dict] = None) -> None:
        self.model = model
        self.optim_wrapper = optim_wrapper
        self.device = device
        self.device_type = torch.device(device).type
        self.amp = amp
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.bare = isinstance(model, BareEncoders)
        if compile:
            from sera_mm.engine.launch_utils import compile_model_methods
            compile_model_methods(
                model, ('forward', ) if self.bare else ('loss', 'predict'))

    def optimizer(self) -> Tuple[torch.optim.Optimizer,
                                 Callable[[torch.Tensor], None]]:
        """A fresh optimizer for the trainable parameters and the update
        that applies it to a loss (backward, clipping if configured,
        step)."""
        if self.optim_wrapper is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)

            def update(loss: torch.Tensor) -> None:
                loss.backward()
                optimizer.step()

            return optimizer, update
        from mmengine.optim import build_optim_wrapper

        from sera_mm.engine.optim_wrappers import use_summary_constructor
        cfg = dict(optim_wrapper=copy.deepcopy(dict(self.optim_wrapper)))
        use_summary_constructor(cfg)  # the constructor tools/train.py uses
        wrapper = build_optim_wrapper(self.model, cfg['optim_wrapper'])
        return wrapper.optimizer, wrapper.update_params

    def autocast(self):
        if not self.amp:
            return nullcontext()
        dtype = torch.float16 if self.device_type == 'cuda' else \
            torch.bfloat16
        return torch.autocast(self.device_type, dtype=dtype)

    def prepare(self, batch: int, size: int, training: bool) -> dict:
        """Synthetic batch through the data preprocessor (on ``device``)."""
        data = synthetic_batch(batch, size, with_gt=training)
        data = self.model.data_preprocessor(data, training)
        if self.channels_last:
            data['inputs'] = data['inputs'].contiguous(
                memory_format=torch.channels_last)
        return data

    def sync(self) -> None:
        if self.device_type == 'cuda':
            torch.cuda.synchronize()

    def infer(self, batch: int, size: int) -> Callable[[], Any]:
        """Closure running one inference (preprocessing included)."""
        data = synthetic_batch(batch, size)
        model = self.model

        def step():
            with torch.no_grad(), self.autocast():
                d = model.data_preprocessor(data, False)
                inputs = d['inputs']
                if self.channels_last:
                    inputs = inputs.contiguous(
                        memory_format=torch.channels_last)
                if self.bare:
                    texts = [s.metainfo['text'] for s in d['data_samples']]
                    out = model(inputs, texts)
                else:
                    out = model.predict(inputs, d['data_samples'])
            self.sync()
            return out

        model.eval()
        return step

    def train_step(self, batch: int, size: int,
                   vary: bool = False) -> Optional[Callable[[], Any]]:
        """Closure running forward loss + backward + AdamW step; None when
        nothing is trainable. The bare encoders' loss is the mean square of
        their grids (a stand-in with the same backward path).

        Args:
            vary: every call trains on a new synthetic batch (other images
                and expressions, as in real training) instead of the same
                one.
        """
        if not any(p.requires_grad for p in self.model.parameters()):
            return None
        optimizer, update = self.optimizer()
        data = self.prepare(batch, size, training=True)
        model = self.model
        calls = [0]

        def step():
            nonlocal data
            if vary and calls[0]:
                synthetic = synthetic_batch(batch, size, with_gt=True,
                                            seed=calls[0])
                data = model.data_preprocessor(synthetic, True)
                if self.channels_last:
                    data['inputs'] = data['inputs'].contiguous(
                        memory_format=torch.channels_last)
            calls[0] += 1
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                if self.bare:
                    texts = [
                        s.metainfo['text'] for s in data['data_samples']
                    ]
                    outs = model(data['inputs'], texts)
                    loss = sum(o.float().pow(2).mean() for o in outs)
                else:
                    losses = model.loss(data['inputs'], data['data_samples'])
                    loss = sum(v if torch.is_tensor(v) else sum(v)
                               for k, v in losses.items() if 'loss' in k)
            update(loss)
            self.sync()
            return float(loss.detach())

        step.optimizer = optimizer

        model.train()
        return step

"""What a model was trained on: recorded in its checkpoints and shown by the
demo and ``tools/infer.py``, so that nobody mistakes a model of synthetic
shapes for one of photographs."""
from typing import Any, Dict, Mapping, Optional

#: ``checkpoint['meta']`` key of the record.
TRAINED_ON_KEY = 'trained_on'


def _dataset_cfg(cfg: Any) -> Dict[str, Any]:
    loader = (cfg.get('train_dataloader') if hasattr(cfg, 'get') else
              None) or {}
    dataset = dict(loader.get('dataset') or {})
    while 'dataset' in dataset and 'type' in dataset and \
            'Repeat' in str(dataset['type']):  # wrappers
        dataset = dict(dataset['dataset'])
    return dataset


def describe_training_data(cfg: Any,
                           iterations: Optional[int] = None,
                           metrics: Optional[Mapping[str, float]] = None
                           ) -> Dict[str, Any]:
    """The training data of a config: dataset type, root, partition and
    split, whether it is the synthetic benchmark, and (when given) the
    iterations trained and the last validation metrics."""
    dataset = _dataset_cfg(cfg)
    kind = str(dataset.get('type', 'unknown'))
    info: Dict[str, Any] = dict(
        dataset=kind,
        data_root=dataset.get('data_root'),
        split_by=dataset.get('split_by'),
        split=dataset.get('split', 'train'),
        synthetic='synthetic' in kind.lower(),
    )
    if iterations is not None:
        info['iterations'] = int(iterations)
    if metrics:
        info['val_metrics'] = {k: float(v) for k, v in metrics.items()}
    return info


def training_data_note(info: Optional[Mapping[str, Any]]) -> str:
    """One sentence for users about what the model was trained on."""
    if not info:
        return ('the training data of this model is not recorded; check '
                'which data it was trained on before trusting its masks')
    where = info.get('data_root') or info.get('dataset')
    split = info.get('split')
    iters = info.get('iterations')
    trained = f'trained on {where}' + (f' ({split})' if split else '') + (
        f' for {iters} iterations' if iters else '')
    if info.get('synthetic'):
        return (f'{trained}: the built-in synthetic benchmark of coloured '
                f'shapes. It segments shapes in such scenes; on '
                f'photographs its masks are meaningless.')
    return trained


__all__ = ['TRAINED_ON_KEY', 'describe_training_data', 'training_data_note']

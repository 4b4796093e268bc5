"""The lottery ticket hypothesis (Frankle & Carbin, 2019): tickets, rewinding, iterative magnitude pruning.

* :mod:`~distiller.lottery.ticket` — :func:`make_ticket`: initial (or rewound) weights under trained masks.
* :mod:`~distiller.lottery.pruning` — which weights IMP prunes, globally or layer by layer, per round.
* :mod:`~distiller.lottery.checkpoints` — tickets from checkpoint files, ticket checkpoints for ``classify``.
* :mod:`~distiller.lottery.imp` — the IMP loop over rounds (train, prune, rewind, retrain).
* :mod:`~distiller.lottery.imp_app` — ``distiller lottery imp``: the loop wired to the app's builders.
"""

from distiller.lottery.checkpoints import TicketCheckpoint, save_ticket, ticket_checkpoint, ticket_from_checkpoints
from distiller.lottery.imp import IMPConfig, IMPResult, RoundRecord, Snapshot, TrainingSetup, run_imp
from distiller.lottery.pruning import (
    STRATEGIES,
    global_magnitude_masks,
    layerwise_magnitude_masks,
    masks_sparsity,
    output_layer_weight,
    prunable_weights,
    prune_round_masks,
)
from distiller.lottery.ticket import Ticket, make_ticket, masks_from_zeros

__all__ = [
    "IMPConfig",
    "IMPResult",
    "RoundRecord",
    "STRATEGIES",
    "Snapshot",
    "Ticket",
    "TicketCheckpoint",
    "TrainingSetup",
    "global_magnitude_masks",
    "layerwise_magnitude_masks",
    "make_ticket",
    "masks_from_zeros",
    "masks_sparsity",
    "output_layer_weight",
    "prunable_weights",
    "prune_round_masks",
    "run_imp",
    "save_ticket",
    "ticket_checkpoint",
    "ticket_from_checkpoints",
]

"""The AMC flags (``--amc*``), spelled, defaulted and documented as in the original's ``amc_args.py``."""

from __future__ import annotations

import argparse

from distiller.apps.amc_options import AMCOptions
from distiller.apps.search_modes import AMC
from distiller.cli.search_mode_args import reject_other_modes

__all__ = ["add_amc_args", "amc_options_from_args"]

PROTOCOLS = ["mac-constrained", "accuracy-guaranteed", "punish-agent", "harmonic-mean"]
PRUNE_PATTERNS = ["filters", "channels"]
PRUNE_METHODS = ["l1-rank", "stochastic-l1-rank", "fm-reconstruction"]
AGENT_ALGOS = ["ClippedPPO-continuous", "TD3", "DDPG", "Random-policy"]


def add_amc_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--amc`` to ``parser``'s main group and the rest to an "AutoML Compression Arguments" group."""
    parser.add_argument("--amc", action="store_true",
                        help="AMC: search per-layer pruning ratios with a reinforcement-learning agent")
    group = parser.add_argument_group("AutoML Compression Arguments")
    group.add_argument("--amc-cfg", dest="amc_cfg_file", type=str, default=None,
                       help="AMC configuration file: a 'network:' list of the layers to search (default: every "
                            "prunable channel group of the model graph)")
    group.add_argument("--amc-protocol", choices=PROTOCOLS, default="mac-constrained",
                       help="Compression-policy search protocol")
    group.add_argument("--amc-ft-epochs", type=int, default=1,
                       help="The number of epochs to fine-tune each discovered network (0: none)")
    group.add_argument("--amc-save-chkpts", action="store_true", default=False,
                       help="Save checkpoints of all discovered networks")
    group.add_argument("--amc-action-range", type=float, nargs=2, default=[0.0, 0.80], metavar=("LOW", "HIGH"),
                       help="Range of the action: the fraction of a layer's channels to remove (default: 0.0 0.8)")
    group.add_argument("--amc-heatup-episodes", type=int, default=100,
                       help="The number of episodes for heatup/exploration")
    group.add_argument("--amc-training-episodes", type=int, default=700,
                       help="The number of episodes for training/exploitation")
    group.add_argument("--amc-reward-frequency", type=int, default=None,
                       help="Reward computation frequency (measured in agent steps)")
    group.add_argument("--amc-target-density", type=float, default=None,
                       help="Target density of the network we are seeking (fraction of the dense MACs)")
    group.add_argument("--amc-agent-algo", default="ClippedPPO-continuous",
                       metavar="{" + ",".join(AGENT_ALGOS) + "}",
                       help="The agent algorithm to use (any case)")
    group.add_argument("--amc-ft-frequency", type=int, default=None,
                       help="How many action-steps between fine-tuning. By default there is no fine-tuning "
                            "between steps.")
    group.add_argument("--amc-prune-pattern", choices=PRUNE_PATTERNS, default="filters", help="The pruning pattern")
    group.add_argument("--amc-prune-method", choices=PRUNE_METHODS, default="l1-rank", help="The pruning method")
    group.add_argument("--amc-group-size", type=int, default=1,
                       help="Number of filters/channels to group: kept channels are a multiple of it")
    group.add_argument("--amc-reconstruct-pts", dest="amc_fm_reconstruction_n_pts", type=int, default=10,
                       help="Number of points sampled per feature map for fm-reconstruction")
    group.add_argument("--amc-ranking-noise", type=float, default=0.0,
                       help="Structure ranking noise (stochastic-l1-rank)")


def amc_options_from_args(args: argparse.Namespace) -> AMCOptions:
    """The typed options; with ``--amc``, also checks the values and the other modes asked for.

    The combination is checked here, on the command line, because modes that come before AMC in
    the app's dispatch table would otherwise run silently instead of it.

    Raises:
        ConfigError: a value out of range, or ``--amc`` with a mode it does not combine with.
    """
    opts = AMCOptions(
        enabled=args.amc,
        cfg=args.amc_cfg_file,
        protocol=args.amc_protocol,
        ft_epochs=args.amc_ft_epochs,
        save_chkpts=args.amc_save_chkpts,
        heatup_episodes=args.amc_heatup_episodes,
        training_episodes=args.amc_training_episodes,
        reward_frequency=args.amc_reward_frequency,
        target_density=args.amc_target_density,
        ft_frequency=args.amc_ft_frequency,
        prune_pattern=args.amc_prune_pattern,
        prune_method=args.amc_prune_method,
        group_size=args.amc_group_size,
        reconstruct_pts=args.amc_fm_reconstruction_n_pts,
        ranking_noise=args.amc_ranking_noise,
        agent_algo=args.amc_agent_algo,
        action_range=list(args.amc_action_range),
    )
    if opts.enabled:
        opts.validate()  # also spells --amc-agent-algo canonically (any case and the original's names are accepted)
        reject_other_modes(args, AMC)
    return opts

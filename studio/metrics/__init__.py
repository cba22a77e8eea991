"""Metrics over plain rows and arrays: agreement, biases, bootstrap breakdowns and the Bradley–Terry leaderboard.

Pure functions (numpy, pandas, scipy, scikit-learn); no store, no models. See each module's docstring.
"""

from studio.metrics.agreement import (
    Agreement,
    agreement,
    cohen_kappa,
    confusion,
    cross_pairs,
    flip,
    group_votes,
    inter_annotator_alpha,
    kendall_tau,
    mean_kendall_tau,
    outcome,
    s1,
    s2,
    within_pairs,
)
from studio.metrics.bias import Rate, length_bias, position_bias, position_picks, swap_flip_rate
from studio.metrics.bootstrap import Estimate, bootstrap_ci, breakdown
from studio.metrics.leaderboard import (
    BoardRow,
    Match,
    boards,
    bradley_terry,
    leaderboard,
    matches_from_ranking,
    win_rate_matrix,
)
from studio.metrics.report import agreement_report, bias_report, winner_from_ratings
from studio.metrics.style import (
    Coefficient,
    LengthControlled,
    StyleBoard,
    length_controlled_win_rate,
    style_features,
    style_leaderboard,
)

__all__ = [
    "Agreement",
    "BoardRow",
    "Coefficient",
    "Estimate",
    "LengthControlled",
    "Match",
    "Rate",
    "StyleBoard",
    "agreement",
    "agreement_report",
    "bias_report",
    "boards",
    "bootstrap_ci",
    "bradley_terry",
    "breakdown",
    "cohen_kappa",
    "confusion",
    "cross_pairs",
    "flip",
    "group_votes",
    "inter_annotator_alpha",
    "kendall_tau",
    "leaderboard",
    "length_bias",
    "length_controlled_win_rate",
    "matches_from_ranking",
    "mean_kendall_tau",
    "outcome",
    "position_bias",
    "position_picks",
    "s1",
    "s2",
    "style_features",
    "style_leaderboard",
    "swap_flip_rate",
    "win_rate_matrix",
    "winner_from_ratings",
    "within_pairs",
]

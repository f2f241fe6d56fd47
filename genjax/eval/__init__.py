"""Metrics that need more than a loss: log-likelihood estimates, baselines, sample quality.

A plain list of re-exports (``name as name``), one import per line.
"""

from genjax.eval.baselines import BernoulliMixture as BernoulliMixture
from genjax.eval.baselines import (
    bernoulli_mixture_log_likelihood as bernoulli_mixture_log_likelihood,
)
from genjax.eval.baselines import fit_bernoulli_mixture as fit_bernoulli_mixture
from genjax.eval.baselines import fit_independent_bernoulli as fit_independent_bernoulli
from genjax.eval.baselines import (
    independent_bernoulli_log_likelihood as independent_bernoulli_log_likelihood,
)
from genjax.eval.classifier import Classifier as Classifier
from genjax.eval.classifier import ClassifierConfig as ClassifierConfig
from genjax.eval.classifier import train_classifier as train_classifier
from genjax.eval.frechet import fit_gaussian as fit_gaussian
from genjax.eval.frechet import frechet_distance as frechet_distance
from genjax.eval.frechet import gaussian_frechet_distance as gaussian_frechet_distance
from genjax.eval.inception import InceptionV3 as InceptionV3
from genjax.eval.inception import inception_features as inception_features
from genjax.eval.likelihood import iwae_log_likelihood as iwae_log_likelihood
from genjax.eval.likelihood import mean_and_stderr as mean_and_stderr
from genjax.eval.sample_metrics import DensityCoverage as DensityCoverage
from genjax.eval.sample_metrics import MeanStd as MeanStd
from genjax.eval.sample_metrics import PrecisionRecall as PrecisionRecall
from genjax.eval.sample_metrics import density_coverage as density_coverage
from genjax.eval.sample_metrics import inception_score as inception_score
from genjax.eval.sample_metrics import kernel_inception_distance as kernel_inception_distance
from genjax.eval.sample_metrics import knn_radii as knn_radii
from genjax.eval.sample_metrics import polynomial_kernel_mmd2 as polynomial_kernel_mmd2
from genjax.eval.sample_metrics import precision_recall as precision_recall

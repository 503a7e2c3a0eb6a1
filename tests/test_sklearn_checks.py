"""scikit-learn's own estimator checks on a tiny CNNClassifier."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from imgclf import CNNClassifier

# About 50 fits of 6 epochs: the full suite runs them, the fast tier does not.
# (15 epochs were needed for check_classifiers_train's accuracy bar before fit
# ended with exact BatchNorm statistics; 6 pass now.)
pytestmark = pytest.mark.slow

# Checks a neural network cannot pass by design, each with the reason.
EXPECTED_FAILED_CHECKS = {
    # The check wants predict_proba equal to rtol 1e-7 when the samples come in
    # another order. A float32 network on oneDNN agrees to about 1 ulp (3e-8
    # seen here): its kernels block and sum a batch differently depending on
    # the batch's composition and on thread scheduling, so on a loaded machine
    # two probabilities out of 60 differed in the 8th digit. The original code
    # fails it the same way here; it passes on a quiet machine.
    "check_methods_sample_order_invariance": "float32 results agree to ~1 ulp, not 1e-7",
    # An estimator with transform gets the transformer checks. They call
    # fit_transform, which a classifier that can also transform does not have
    # (a Pipeline calls fit, then transform; fit_transform would suggest a
    # transformer whose fit is cheap). check_transformers_unfitted and
    # check_transformer_n_iter pass.
    "check_transformer_data_not_an_array": "no fit_transform: a classifier, not a transformer",
    "check_transformer_general": "no fit_transform: a classifier, not a transformer",
    # Weight k is not k copies for minibatch training: a copied image is seen
    # k times an epoch in different batches, and the epochs are longer (more
    # steps, so another learning-rate schedule and BatchNorm statistics).
    # Weight 0 is leaving the image out exactly (tests/test_sample_weight.py).
    "check_sample_weight_equivalence_on_dense_data": (
        "weight k is not k copies under minibatch SGD; weight 0 is tested separately"
    ),
}


def _tiny():
    return CNNClassifier(epochs=6, batch_size=16, filters=8, learning_rate=3e-3, random_state=0)


@parametrize_with_checks([_tiny()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

"""scikit-learn's own estimator checks on a tiny CNNClassifier."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from imgclf import CNNClassifier

# Checks a neural network cannot pass by design, each with the reason.
EXPECTED_FAILED_CHECKS = {}


def _tiny():
    return CNNClassifier(epochs=15, batch_size=16, filters=8, learning_rate=3e-3, random_state=0)


@parametrize_with_checks([_tiny()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

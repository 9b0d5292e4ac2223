"""Classifiers trained on the labels alone, the reference for a semi-supervised run: the test error of
scikit-learn's logistic regression and 1-nearest-neighbour fitted to the N labelled training examples that
`jaxvae train --labels N --label-seed S` keeps (`labels.labelled_subset`, the same draw), for each label seed.

Inputs as `jaxvae train` reads them (grey values in [0, 1], not binarized), the whole training split's labels
drawn from (no validation split), test error on the whole test split; one line a label seed, then the mean and
sd over the seeds.

    .venv/bin/python benchmarks/few_labels.py --dataset mnist --data-dir ../shared/data --labels 100 --seeds 5
"""

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from jaxvae.data import load_dataset
from jaxvae.labels import labelled_subset

CLASSIFIERS = {
    "logistic regression": lambda: LogisticRegression(max_iter=5000),
    "1-nearest-neighbour": lambda: KNeighborsClassifier(n_neighbors=1),
}


def test_errors(x_train, y_train, x_test, y_test, labels: int, classes: int, seed: int) -> dict[str, float]:
    """Each classifier's test error (a fraction) fitted to the `labels` examples label seed `seed` keeps."""
    kept, _ = labelled_subset(y_train, labels, classes, seed)
    return {
        name: float(np.mean(make().fit(x_train[kept], y_train[kept]).predict(x_test) != y_test))
        for name, make in CLASSIFIERS.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--labels", type=int, required=True)
    parser.add_argument("--seeds", type=int, default=5, help="label seeds 0 .. N-1")
    args = parser.parse_args()
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    classes = int(data.y_train.max()) + 1
    rows = [
        test_errors(data.x_train, data.y_train, data.x_test, data.y_test, args.labels, classes, seed)
        for seed in range(args.seeds)
    ]
    print(f"{args.dataset}, {args.labels} labels, test error over {len(data.x_test)} test examples:")
    for name in CLASSIFIERS:
        errors = np.array([row[name] for row in rows])
        each = " ".join(f"{e:.2%}" for e in errors)
        print(f"  {name:<20} seeds {each}  mean {errors.mean():.2%} ± {errors.std(ddof=1):.2%}")


if __name__ == "__main__":
    main()

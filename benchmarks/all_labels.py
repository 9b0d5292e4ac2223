"""What a data set's inputs allow a classifier with every training label: the test error of scikit-learn's
logistic regression, 1- and 5-nearest-neighbour and a one-hidden-layer network (300 ReLU units, Adam, 10 % of
the training examples held out for early stopping, seed 0) fitted to the whole training split. For M1+M2 it
shows what M2 can hope to make of M1's features from a few labels: what the same features give a classifier
that is told every label.

Inputs as `jaxvae train` reads them (grey values in [0, 1], not binarized; an `.npz` of `encode --features`
as it is), test error on the whole test split, one line a classifier.

    .venv/bin/python benchmarks/all_labels.py --dataset m1.npz
"""

import argparse

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier

from few_labels import CLASSIFIERS as FEW_LABELS_CLASSIFIERS
from jaxvae.data import load_dataset

CLASSIFIERS = {  # few_labels.py's logistic regression and 1-nearest-neighbour, then two more
    **FEW_LABELS_CLASSIFIERS,
    "5-nearest-neighbour": lambda: KNeighborsClassifier(n_neighbors=5),
    "network, 300 hidden": lambda: MLPClassifier(hidden_layer_sizes=(300,), early_stopping=True, random_state=0),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    print(f"{args.dataset}, all {len(data.x_train)} training labels, test error over {len(data.x_test)} examples:")
    for name, make in CLASSIFIERS.items():
        predicted = make().fit(data.x_train, data.y_train).predict(data.x_test)
        print(f"  {name:<20} {np.mean(predicted != data.y_test):.2%}", flush=True)


if __name__ == "__main__":
    main()

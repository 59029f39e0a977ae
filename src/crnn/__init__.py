"""crnn: fast recurrent neural networks on the CPU.

Elman RNN, LSTM and GRU networks — stacked, bidirectional, with dropout —
whose forward pass and backpropagation through time run in compiled code
over scipy's BLAS; this package is the small Python API around them.

>>> import crnn
>>> model = crnn.LSTM(input_size=8, hidden_size=32, output_size=4, seed=0)
"""

from crnn._version import __version__
from crnn.clip import clip_grad_norm, clip_grad_value
from crnn.model import GRU, LSTM, RNN, load
from crnn import callbacks, layers, optim
from crnn.optim import SGD, Adagrad, Adam, RMSprop
from crnn._threads import get_num_threads, set_num_threads
from crnn._torch_weights import from_torch

__all__ = [
    "RNN", "LSTM", "GRU", "load", "layers", "clip_grad_norm", "clip_grad_value", "optim", "callbacks",
    "SGD", "Adagrad", "RMSprop", "Adam", "set_num_threads", "get_num_threads", "from_torch",
    "__version__",
]

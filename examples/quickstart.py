"""Train an Elman RNN to echo its input from two steps back, then test it.

Each sequence is random symbols; at every step the target is the symbol seen
two steps earlier, so the network must hold it in its hidden state. Runs in a
few seconds on two cores.
"""

import time

import numpy as np

import crnn

rng = np.random.default_rng(0)
T, N, V, K = 16, 4096, 8, 2                         # steps, sequences, symbols, delay

x = rng.integers(0, V, size=(T, N))                 # token ids, time-major (T, N)
target = np.zeros_like(x)
target[K:] = x[:-K]                                 # echo from K steps back

model = crnn.RNN(input_size=V, hidden_size=64, output_size=V, seed=0)
print(model)
start = time.perf_counter()
history = model.fit(x, target, epochs=8, batch_size=32, lr=0.5, clip_norm=5.0, seed=0)
print(f"trained in {time.perf_counter() - start:.1f} s")

x_test = rng.integers(0, V, size=(T, 512))
predicted = model.predict(x_test).argmax(axis=-1)   # (T, B) classes
accuracy = (predicted[K:] == x_test[:-K]).mean()
print(f"test accuracy (steps {K}..{T - 1}): {accuracy:.4f}")

model.save("echo.npz")
print("saved to echo.npz; reloads as crnn.load('echo.npz')")

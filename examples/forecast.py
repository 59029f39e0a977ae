"""One-step-ahead forecasting of a seasonal series with the linear head.

The series is the monthly mean CO2 concentration at Mauna Loa, 1958–2001
(statsmodels' bundled ``co2`` dataset: weekly values, no download, averaged
here by month; its ``sunspots`` dataset is yearly, so CO2 is the monthly
one). Without statsmodels a generated mixture of sines with a trend stands
in. The network reads the last ``window`` month-to-month changes and
predicts the next one; forecasting changes rather than levels keeps the
inputs in the range seen in training although the level keeps rising.

The last ten years are held out; on them the forecast is compared with the
naive forecast "next month = this month". Prints both RMSEs and saves
``forecast.png``: prediction against truth on the held-out years.

Run: ``python examples/forecast.py`` (needs matplotlib; statsmodels optional).
"""

import time

import matplotlib

matplotlib.use("Agg")       # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np

import crnn


def load_series():
    """The series, the time of each value (in years) and a description.

    Monthly CO2 (ppm) from statsmodels, or a generated sine mixture.
    """
    try:
        from statsmodels.datasets import co2
    except ImportError:
        t = np.arange(528)
        rng = np.random.default_rng(0)
        series = (0.02 * t + np.sin(2 * np.pi * t / 12) + 0.5 * np.sin(2 * np.pi * t / 31)
                  + 0.1 * rng.standard_normal(t.size))
        return series, t / 12, "generated sine mixture (statsmodels is not installed)"
    weekly = co2.load_pandas().data["co2"]
    # A few weeks are missing; interpolate the handful of empty months.
    monthly = weekly.resample("MS").mean().interpolate()
    years = monthly.index.year + (monthly.index.month - 1) / 12
    return (monthly.to_numpy(dtype=np.float64), np.asarray(years),
            "monthly mean CO2 at Mauna Loa, ppm, 1958–2001")


def windows(changes, ends, window):
    """Inputs (window, len(ends), 1): the ``window`` changes before each end, time-major."""
    index = np.asarray(ends)[None, :] + np.arange(-window, 0)[:, None]
    return changes[index][..., None]


def main(hidden=32, window=36, epochs=60, lr=3e-3, test_months=120, plot="forecast.png",
         seed=0):
    """Train, compare with the naive forecast, save the plot; return (rmse, naive_rmse)."""
    series, years, name = load_series()
    n = series.size
    first_test = n - test_months
    # changes[k] = series[k + 1] − series[k]; standardised with training statistics only.
    changes = np.diff(series)
    train_changes = changes[:first_test - 1]
    mean, std = train_changes.mean(), train_changes.std()
    scaled = (changes - mean) / std

    # Training: every window inside the training years, a target at every step
    # (the next change), so each window teaches `window` forecasts at once.
    starts = np.arange(train_changes.size - window)
    x = windows(scaled, starts + window, window)                  # (T, B, 1)
    target = windows(scaled, starts + window + 1, window)         # shifted by one month
    model = crnn.RNN(1, hidden, 1, output="linear", dtype="float64", seed=seed)
    start = time.perf_counter()
    history = model.fit(x, target, epochs=epochs, batch_size=32, optimizer="adam", lr=lr,
                        clip_norm=1.0, seed=seed, verbose=0)
    seconds = time.perf_counter() - start

    # Forecast of series[j] for each held-out month j, from the `window`
    # changes up to series[j − 1], all known at forecast time.
    months = np.arange(first_test, n)
    predicted_change = model.predict(windows(scaled, months - 1, window))[-1, :, 0]
    forecast = series[months - 1] + predicted_change * std + mean
    naive = series[months - 1]
    truth = series[months]
    rmse = float(np.sqrt(np.mean((forecast - truth) ** 2)))
    naive_rmse = float(np.sqrt(np.mean((naive - truth) ** 2)))
    print(f"{name}: {n} months, the last {test_months} held out")
    print(f"{len(starts)} training windows of {window} months, {epochs} epochs in "
          f"{seconds:.1f} s, final training loss {history['loss'][-1]:.4f}")
    print(f"held-out RMSE: RNN {rmse:.3f}, naive last value {naive_rmse:.3f} "
          f"({naive_rmse / rmse:.1f}× the RNN's)")

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(years[months], truth, "k.-", lw=1, label="truth")
    ax.plot(years[months], forecast, "-", color="tab:blue",
            label=f"RNN forecast (RMSE {rmse:.3f})")
    ax.plot(years[months], naive, "--", color="tab:orange", lw=1,
            label=f"naive: last value (RMSE {naive_rmse:.3f})")
    ax.set_xlabel("year")
    ax.set_title(f"One-step-ahead forecast, held-out tail — {name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    print(f"saved {plot}")
    return rmse, naive_rmse


if __name__ == "__main__":
    main()

"""Speed and agreement of the two line fitters of :mod:`ismcgm.fit`.

Builds a fixed set of realistic synthetic spectra (lines from
:func:`ismcgm.fit.line_model` plus a weak sloped continuum and Gaussian
noise; brightest-line S/N between 3 and 50; several redshifts; G235M, G395M
and G395H), fits all Monte Carlo realisations of every spectrum with the
``fast`` (variable projection) and the ``lmfit`` (reference) fitter in the
same process, and prints the wall times, the speed-up and the largest
disagreement:

* line fluxes, in units of the Monte Carlo flux error of that line (the
  standard deviation of the lmfit fluxes over the realisations);
* velocity offsets [km/s];
* chi^2 (fast minus lmfit; negative means the fast fitter found the lower
  minimum).

Both fitters run single-threaded (lmfit is; the BLAS thread count is set
to 1 unless ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` are already set), so
the speed-up compares like with like.

Usage::

    python bench/fit_speed.py [--quick] [--n-spectra N] [--n-real N] [--seed S]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from ismcgm import fit, instrument  # noqa: E402

#: Line fluxes relative to the brightest line (H-alpha or [O III] 5007);
#: roughly the ratios of z ~ 5 star-forming galaxies.
RELATIVE_FLUX = {
    "OII3728": 0.35,
    "HB": 0.3,
    "OIII4959": 0.8 / 3.0,
    "OIII5007": 0.8,
    "NII6548": 0.06 / 3.0,
    "HA": 1.0,
    "NII6583": 0.06,
    "SII6716": 0.08,
    "SII6731": 0.06,
}

#: (grating, z) pairs of the benchmark spectra.
SETUPS = (
    ("g395m", 4.45),
    ("g395m", 5.15),
    ("g395m", 5.65),
    ("g235m", 4.5),
    ("g235m", 5.2),
    ("g395h", 4.7),
    ("g395h", 5.4),
)


def line_flux_error(err, grating, wave_um, sigma_kms):
    """Approximate 1-sigma flux error of an isolated line (optimal weighting)."""
    lsf = grating.lsf_sigma_kms(wave_um)
    sig_A = wave_um * 1e4 * np.hypot(sigma_kms, lsf) / instrument.C_KMS
    dlam_A = grating.dlam_um * 1e4
    return err * np.sqrt(2.0 * np.sqrt(np.pi) * sig_A * dlam_A)


def make_spectrum(rng, grating_name, z, snr, n_real):
    """One synthetic spectrum and ``n_real`` noisy realisations of it.

    Returns
    -------
    dict
        ``wave_um, flux (n_real, n_wave), err, z, grating, truth`` where
        ``truth`` holds the input fluxes, velocity and dispersion.
    """
    g = instrument.get_grating(grating_name)
    wave = g.wavelength_grid()
    lines = instrument.lines_in_grating(g, z)
    velocity = rng.uniform(-150.0, 150.0)
    sigma = rng.uniform(30.0, 200.0)
    err_level = 1e-20 * rng.uniform(0.5, 2.0)
    err = err_level * (1.0 + 0.3 * (wave - wave[0]) / (wave[-1] - wave[0]))
    brightest = max(lines, key=RELATIVE_FLUX.get)
    lam = instrument.observed_wavelength_um(brightest, z)
    f_ref = snr * line_flux_error(np.interp(lam, wave, err), g, lam, sigma)
    f_ref /= RELATIVE_FLUX[brightest]
    fluxes = {name: RELATIVE_FLUX[name] * f_ref for name in lines}
    continuum = err_level * (0.5 + 0.5 * (wave - wave[0]) / (wave[-1] - wave[0]))
    model = fit.line_model(wave, z, g, fluxes, velocity, sigma) + continuum
    flux = model + rng.standard_normal((n_real, wave.size)) * err
    truth = dict(fluxes=fluxes, velocity=velocity, sigma=sigma)
    return dict(wave_um=wave, flux=flux, err=err, z=z, grating=grating_name, truth=truth)


def make_spectra(n_spectra, n_real, seed=2024):
    """A fixed list of benchmark spectra cycling through :data:`SETUPS`."""
    rng = np.random.default_rng(seed)
    snrs = np.geomspace(3.0, 50.0, n_spectra)
    out = []
    for i in range(n_spectra):
        gname, z = SETUPS[i % len(SETUPS)]
        out.append(make_spectrum(rng, gname, z, snrs[i], n_real))
    return out


def compare(fast, ref):
    """Largest flux (in MC errors), velocity and chi^2 disagreement of two fits."""
    dflux = 0.0
    for line in ref.lines:
        scale = np.std(ref.flux[line])
        dflux = max(dflux, float(np.max(np.abs(fast.flux[line] - ref.flux[line])) / scale))
    dv = float(np.max(np.abs(fast.velocity_kms - ref.velocity_kms)))
    dchi2 = float(np.max(fast.chi2 - ref.chi2))
    return dflux, dv, dchi2


def run(spectra, verbose=True):
    """Fit every spectrum with both fitters; return times and disagreements."""
    t_fast = t_ref = 0.0
    worst = np.zeros(3)
    for i, spec in enumerate(spectra):
        args = (spec["wave_um"], spec["flux"], spec["err"], spec["z"], spec["grating"])
        t0 = time.perf_counter()
        fast = fit.fit_spectra(*args, method="fast")
        t1 = time.perf_counter()
        ref = fit.fit_spectra(*args, method="lmfit")
        t2 = time.perf_counter()
        t_fast += t1 - t0
        t_ref += t2 - t1
        diff = compare(fast, ref)
        worst = np.maximum(worst, diff)
        if verbose:
            print(
                f"  {i:2d} {spec['grating']} z={spec['z']:.2f} fast {t1 - t0:6.3f} s "
                f"lmfit {t2 - t1:6.2f} s  |dF|/sigma_F={diff[0]:.2e} |dv|={diff[1]:.2e} km/s "
                f"max dchi2={diff[2]:.1e}"
            )
    return t_fast, t_ref, worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 spectra x 30 realisations")
    parser.add_argument("--n-spectra", type=int, default=20)
    parser.add_argument("--n-real", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    n_spectra, n_real = (5, 30) if args.quick else (args.n_spectra, args.n_real)
    spectra = make_spectra(n_spectra, n_real, args.seed)
    print(f"{n_spectra} spectra x {n_real} realisations (brightest-line S/N 3-50)")
    t_fast, t_ref, worst = run(spectra)
    print(f"fast  fitter: {t_fast:8.3f} s")
    print(f"lmfit fitter: {t_ref:8.3f} s")
    print(f"fast/lmfit speed-up: {t_ref / t_fast:.0f} x")
    print(f"max |flux difference| / flux error: {worst[0]:.2e}")
    print(f"max |velocity difference|: {worst[1]:.2e} km/s")
    print(f"max chi2(fast) - chi2(lmfit): {worst[2]:.2e}")


if __name__ == "__main__":
    main()

"""Rewrite the SYNTHETIC mock's files the way other software writes the same data (issue 16, items 3-5).

Each function takes one of the project's own mock files and writes the same
data in another layout, so that a test can check that the workflow gives the
same results from both:

- :func:`ifucube_model`: a NIRSpec ``_s3d`` cube saved through
  ``stdatamodels`` (``IFUCubeModel``: ASDF extension, WMAP, PC matrix with
  PC1_1 = -1 and a positive CDELT1);
- :func:`image_model`: a NIRCam ``_i2d`` image saved through ``ImageModel``
  (SCI, ERR, WHT, CON, VAR_*);
- :func:`hst_counts_image`: an HST image in electrons/s with the photometry
  keywords of WFC3/IR F125W, as a ``_drz`` (PRIMARY, SCI, WHT, CTX) or as a
  single-HDU mosaic (CANDELS, 3D-HST);
- :func:`casa_alma_cube`: an ALMA cube as CASA's ``exportfits`` writes it
  (4-D with a STOKES axis, SIN projection, LSRK, a per-channel ``BEAMS``
  table instead of BMAJ/BMIN, descending frequency);
- :func:`flipped_cube`: a NIRSpec cube stored in descending wavelength
  (CDELT3 < 0, channels reversed).

The files stay labelled SYNTHETIC (the mock's primary header cards are kept).
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

#: WFC3/IR F125W inverse sensitivity and pivot wavelength (the values of the WFC3 IR zeropoint tables, 2020
#: calibration: PHOTFLAM in erg/cm2/A per electron, PHOTPLAM in A); PHOTFNU [Jy s / electron] follows from them.
F125W_PHOTFLAM = 2.2446e-20
F125W_PHOTPLAM = 12486.07
F125W_PHOTFNU = float((F125W_PHOTFLAM * u.erg / u.s / u.cm**2 / u.AA).to_value(
    u.Jy, u.spectral_density(F125W_PHOTPLAM * u.AA)))
F125W_EXPTIME = 2611.7  # s


def _mock_hdus(path):
    with fits.open(path) as hdul:
        return [h.copy() for h in hdul]


def _wcsinfo(model, header, naxis):
    """FITS WCS of ``header`` as ``meta.wcsinfo``, with PC1_1 = -1 and a positive CDELT1 (as the JWST pipeline)."""
    w = WCS(header)
    info = model.meta.wcsinfo
    info.wcsaxes = naxis
    for i in range(naxis):
        k = i + 1
        setattr(info, f"ctype{k}", w.wcs.ctype[i])
        setattr(info, f"crpix{k}", float(w.wcs.crpix[i]))
        setattr(info, f"crval{k}", float(header[f"CRVAL{k}"]))
        setattr(info, f"cunit{k}", str(header.get(f"CUNIT{k}", w.wcs.cunit[i])))
        setattr(info, f"cdelt{k}", float(abs(header[f"CDELT{k}"]) if k == 1 else header[f"CDELT{k}"]))
        for j in range(naxis):
            setattr(info, f"pc{k}_{j + 1}", float(-1.0 if (k, j + 1) == (1, 1) else float(k == j + 1)))
    info.specsys = "BARYCENT" if naxis == 3 else None


def _save(model, prim, sci, dst, instrument, exp_type, naxis) -> None:
    """Fill the metadata a stage-3 product has (MJy/sr, pixel area, FITS WCS), save, keep the SYNTHETIC label."""
    model.meta.telescope = "JWST"
    model.meta.instrument.name = instrument
    model.meta.instrument.filter = prim.header["FILTER"]
    model.meta.exposure.type = exp_type
    model.meta.target.catalog_name = prim.header["OBJECT"]
    model.meta.bunit_data = "MJy/sr"
    model.meta.bunit_err = "MJy/sr"
    model.meta.photometry.pixelarea_steradians = float(sci.header["PIXAR_SR"])
    _wcsinfo(model, sci.header, naxis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(dst))
    model.close()
    with fits.open(dst, mode="update") as hdul:
        for key in ("MOCK", "ORIGIN", "OBJECT"):
            hdul[0].header[key] = prim.header[key]
        hdul[0].header["COMMENT"] = "SYNTHETIC mock data rewritten through stdatamodels"


def ifucube_model(src, dst) -> None:
    """The mock cube ``src`` saved through ``stdatamodels.jwst.datamodels.IFUCubeModel`` as ``dst``."""
    from stdatamodels.jwst import datamodels as dm

    prim, sci, err, dq = _mock_hdus(src)
    model = dm.IFUCubeModel(data=sci.data.astype(np.float32), err=err.data.astype(np.float32),
                            dq=dq.data.astype(np.uint32), weightmap=np.ones(sci.data.shape, np.float32))
    model.meta.instrument.grating = prim.header["GRATING"]
    model.meta.photometry.pixelarea_arcsecsq = float(sci.header["PIXAR_A2"])
    _save(model, prim, sci, dst, "NIRSPEC", "NRS_IFU", 3)


def image_model(src, dst) -> None:
    """The mock image ``src`` saved through ``stdatamodels.jwst.datamodels.ImageModel`` (an ``_i2d``) as ``dst``."""
    from stdatamodels.jwst import datamodels as dm

    prim, sci, err = _mock_hdus(src)
    shape = sci.data.shape
    model = dm.ImageModel(data=sci.data.astype(np.float32), err=err.data.astype(np.float32),
                          wht=np.ones(shape, np.float32), con=np.ones((1, *shape), np.int32),
                          var_poisson=np.zeros(shape, np.float32), var_rnoise=(err.data**2).astype(np.float32))
    _save(model, prim, sci, dst, "NIRCAM", "NRC_IMAGE", 2)


def hst_counts_image(src, dst, layout="drz", photometry=("PHOTFNU", "PHOTFLAM", "PHOTPLAM"), counts=False) -> float:
    """The mock image ``src`` (MJy/sr) in electrons/s (or electrons, ``counts=True``) with HST keywords.

    ``layout``: ``"drz"`` (PRIMARY with the photometry keywords, SCI, WHT,
    CTX; CD matrix, no PIXAR_SR, as AstroDrizzle writes) or ``"single"`` (one
    HDU holding data, WCS and keywords, as the CANDELS/3D-HST mosaics).
    Returns the factor MJy/sr per electron/s that was divided out
    (``PHOTFNU`` x 1e-6 / pixel area from the WCS).
    """
    prim, sci, _ = _mock_hdus(src)
    w = WCS(sci.header).celestial
    cel = w.to_header()
    cd = w.pixel_scale_matrix
    for key in ("CDELT1", "CDELT2", "PC1_1", "PC1_2", "PC2_1", "PC2_2"):
        cel.remove(key, ignore_missing=True)
    for i in range(2):
        for j in range(2):
            cel[f"CD{i + 1}_{j + 1}"] = float(cd[i, j])
    area = WCS(cel).proj_plane_pixel_area().to_value(u.sr)
    factor = F125W_PHOTFNU * 1e-6 / area
    data = np.asarray(sci.data, float) / factor
    if counts:
        data = data * F125W_EXPTIME
    values = {"PHOTFNU": F125W_PHOTFNU, "PHOTFLAM": F125W_PHOTFLAM, "PHOTPLAM": F125W_PHOTPLAM}
    phot = fits.Header()
    for key in photometry:
        phot[key] = values[key]
    phot["EXPTIME"] = F125W_EXPTIME
    head = fits.Header()
    for key in ("ORIGIN", "MOCK", "OBJECT", "COMMENT"):
        for card in prim.header.cards:
            if card.keyword == key:
                head.append(card)
    head["TELESCOP"], head["INSTRUME"], head["DETECTOR"], head["FILTER"] = "HST", "WFC3", "IR", "F125W"
    bunit = "ELECTRONS" if counts else "ELECTRONS/S"
    data = data.astype(np.float32)
    if layout == "single":
        hdr = head + phot + cel
        hdr["BUNIT"] = bunit
        hdus = [fits.PrimaryHDU(data, header=hdr)]
    else:
        sci_hdr = cel.copy()
        sci_hdr["BUNIT"] = bunit
        hdus = [fits.PrimaryHDU(header=head + phot), fits.ImageHDU(data, header=sci_hdr, name="SCI"),
                fits.ImageHDU(np.full(data.shape, F125W_EXPTIME, np.float32), header=cel, name="WHT"),
                fits.ImageHDU(np.ones(data.shape, np.int32), header=cel, name="CTX")]
    fits.HDUList(hdus).writeto(dst, overwrite=True)
    return factor


def casa_alma_cube(src, dst) -> None:
    """The mock ALMA cube ``src`` as CASA ``exportfits`` writes it.

    (STOKES, FREQ, DEC, RA) data, RA---SIN/DEC--SIN, SPECSYS LSRK, frequency
    descending (CRPIX3 = 1 at the highest channel, CDELT3 < 0), the beam in a
    ``BEAMS`` table (one row per channel, BMAJ/BMIN in arcsec as 32-bit
    floats, as CASA writes them) and no BMAJ/BMIN keywords.
    """
    (hdu,) = _mock_hdus(src)
    hdr, data = hdu.header.copy(), hdu.data
    n = data.shape[0]
    bmaj, bmin, bpa = hdr["BMAJ"] * 3600.0, hdr["BMIN"] * 3600.0, hdr["BPA"]
    for key in ("BMAJ", "BMIN", "BPA"):
        del hdr[key]
    spec = WCS(hdu.header).sub([3])
    top = float(spec.pixel_to_world_values(n - 1))
    hdr["NAXIS"] = 4
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---SIN", "DEC--SIN"
    hdr["CRPIX3"], hdr["CRVAL3"], hdr["CDELT3"] = 1.0, top, -float(hdu.header["CDELT3"])
    hdr["CTYPE4"], hdr["CRVAL4"], hdr["CDELT4"], hdr["CRPIX4"], hdr["CUNIT4"] = "STOKES", 1.0, 1.0, 1.0, ""
    hdr["SPECSYS"], hdr["CASAMBM"], hdr["BUNIT"] = "LSRK", True, "Jy/beam"
    cols = [fits.Column("BMAJ", "E", unit="arcsec", array=np.full(n, bmaj)),
            fits.Column("BMIN", "E", unit="arcsec", array=np.full(n, bmin)),
            fits.Column("BPA", "E", unit="deg", array=np.full(n, bpa)),
            fits.Column("CHAN", "J", array=np.arange(n)), fits.Column("POL", "J", array=np.zeros(n))]
    beams = fits.BinTableHDU.from_columns(cols, name="BEAMS")
    beams.header["NCHAN"], beams.header["NPOL"] = n, 1
    fits.HDUList([fits.PrimaryHDU(data[::-1][None], header=hdr), beams]).writeto(dst, overwrite=True)


def flipped_cube(src, dst, exact_grid=False) -> None:
    """The mock NIRSpec cube ``src`` stored in descending wavelength (channels reversed, CDELT3 < 0).

    By default CRPIX3 = 1 at the reddest channel, whose wavelength is written
    as CRVAL3 (what most writers do): the grid then equals the original to
    the last bit of that header value (a few channels differ by 1 ulp).  With
    ``exact_grid`` CRVAL3 stays and CRPIX3 moves to the other end (as
    ``astropy.wcs.WCS.slice`` reverses an axis), so the grid is bit for bit
    the original, reversed.
    """
    hdus = _mock_hdus(src)
    h3 = hdus[1].header
    n = hdus[1].data.shape[0]
    top = float(h3["CRVAL3"] + (n - h3["CRPIX3"]) * h3["CDELT3"])  # the reddest channel, in the file's CUNIT3
    for h in hdus[1:]:
        h.data = h.data[::-1].copy()
        if exact_grid:
            h.header["CRPIX3"] = n + 1.0 - float(h.header["CRPIX3"])
        else:
            h.header["CRPIX3"], h.header["CRVAL3"] = 1.0, top
        h.header["CDELT3"] = -float(h.header["CDELT3"])
    fits.HDUList(hdus).writeto(dst, overwrite=True)


def descending_alma_cube(src, dst) -> None:
    """The mock ALMA cube ``src`` with only its frequency axis reversed (CRPIX3 = 1 at the highest channel)."""
    (hdu,) = _mock_hdus(src)
    n = hdu.data.shape[0]
    top = float(WCS(hdu.header).sub([3]).pixel_to_world_values(n - 1))
    hdu.header["CRPIX3"], hdu.header["CRVAL3"], hdu.header["CDELT3"] = 1.0, top, -float(hdu.header["CDELT3"])
    fits.HDUList([fits.PrimaryHDU(hdu.data[::-1].copy(), header=hdu.header)]).writeto(dst, overwrite=True)

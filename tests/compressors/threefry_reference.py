"""A numpy reference of Threefry-2x32-20 for the tests of the quantizer kernels' stream."""

import numpy as np

_ROT = (13, 15, 26, 6, 17, 29, 16, 24)


def threefry2x32_20(k0, k1, c0, c1):
    """Threefry-2x32-20 (Salmon et al., SC'11, Random123's threefry.h) in numpy uint32."""
    k0, k1 = np.uint32(k0), np.uint32(k1)
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0 = (np.asarray(c0, np.uint32) + ks[0]).astype(np.uint32)
    x1 = (np.asarray(c1, np.uint32) + ks[1]).astype(np.uint32)
    with np.errstate(over="ignore"):
        for r in range(20):
            x0 = x0 + x1
            rot = _ROT[r % 8]
            x1 = (x1 << np.uint32(rot)) | (x1 >> np.uint32(32 - rot))
            x1 = x1 ^ x0
            if r % 4 == 3:
                i = r // 4 + 1
                x0 = x0 + ks[i % 3]
                x1 = x1 + ks[(i + 1) % 3] + np.uint32(i)
    return x0, x1

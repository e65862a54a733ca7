"""The automatic stage, in the project page's style."""

from __future__ import annotations

import asyncio

from pipeteer import ReadQueue, WriteQueue
from topologies.perspective_correction.imaging import correct_perspective


async def automatic_correction(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes | None]) -> None:
    while True:
        id, img = await Qin.read()
        # OpenCV releases the GIL: a worker thread keeps web stages in the same process responsive.
        result = await asyncio.to_thread(correct_perspective, img)  # None when no document is found
        await Qout.push(id, result)
        await Qin.pop(id)

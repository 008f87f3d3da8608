"""What ``defectgan generate`` is made of: the output store, the paint loop, the manifest writer.

:mod:`~anomalib_defectgan.generation.store` owns OUT (claiming it, the resume records, atomic
writes); :mod:`~anomalib_defectgan.generation.paint` paints the items, batch by batch, each from
its own seed; :mod:`~anomalib_defectgan.generation.manifest_writer` turns the finished items'
records into ``manifest.csv`` and the contact sheet. The command
(:mod:`anomalib_defectgan.commands.generate`) checks the options and runs the three.
"""

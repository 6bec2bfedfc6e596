"""Writes spreadsheets with a VBA macro through LibreOffice (headless, driven over UNO).

Usage: /usr/bin/python3 libreoffice_macro.py OUT_DIR MACRO_SOURCE_FILE [PASSWORD]

Makes OUT_DIR/macro.xls (Excel 97, the project in an OLE2 storage) and OUT_DIR/macro.xlsm
(OOXML, the project in xl/vbaProject.bin), each holding one standard module, Module1, with the
given source; with a PASSWORD, also OUT_DIR/protected.xls, the same workbook encrypted with it
(Excel 97's RC4 CryptoAPI encryption, as LibreOffice writes it). LibreOffice writes a VBA project from scratch when its Basic libraries are in VBA
compatibility mode; its own user profile lives in OUT_DIR, so that runs do not share state.
Needs Debian's libreoffice-calc-nogui and python3-uno (scripts/test.sh installs them).
"""

import os
import subprocess
import sys
import time

import uno
from com.sun.star.beans import PropertyValue
from com.sun.star.connection import NoConnectException
from com.sun.star.script import ModuleInfo


def prop(name, value):
    p = PropertyValue()
    p.Name = name
    p.Value = value
    return p


def main():
    out_dir = os.path.abspath(sys.argv[1])
    source = open(sys.argv[2], encoding="utf-8").read()
    pipe = f"mxshield-lo-{os.getpid()}"
    office = subprocess.Popen(
        ["soffice", "--headless", "--invisible", "--norestore", "--nologo", "--nodefault",
         "-env:UserInstallation=" + uno.systemPathToFileUrl(os.path.join(out_dir, "profile")),
         f"--accept=pipe,name={pipe};urp;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext(
            "com.sun.star.bridge.UnoUrlResolver", local)
        remote = None
        for _ in range(600):  # up to 60 s for the first start (it builds its profile)
            try:
                remote = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except NoConnectException:
                if office.poll() is not None:
                    sys.exit(f"soffice exited with {office.returncode}")
                time.sleep(0.1)
        if remote is None:
            sys.exit("soffice did not accept a connection in 60 s")
        desktop = remote.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", remote)
        doc = desktop.loadComponentFromURL("private:factory/scalc", "_blank", 0, (prop("Hidden", True),))
        libraries = doc.BasicLibraries
        libraries.VBACompatibilityMode = True
        libraries.ProjectName = "VBAProject"
        # the project's code page: Windows-1252 (rtl_TextEncoding 1), as Excel in a Western
        # locale writes it; left to itself LibreOffice takes the locale's encoding, and for
        # UTF-8 it writes code page 0, which ClamAV cannot read (see docs/detection.md)
        libraries.setPropertyValue("VBATextEncoding", 1)
        # the exporter writes the library named after the project
        library = libraries.createLibrary("VBAProject")
        library.insertByName("Module1", source)
        info = ModuleInfo()
        info.ModuleType = 1  # com.sun.star.script.ModuleType.NORMAL
        library.insertModuleInfo("Module1", info)
        for name, filter_name in (("macro.xls", "MS Excel 97"), ("macro.xlsm", "Calc MS Excel 2007 VBA XML")):
            url = uno.systemPathToFileUrl(os.path.join(out_dir, name))
            doc.storeToURL(url, (prop("FilterName", filter_name),))
        if len(sys.argv) > 3:
            url = uno.systemPathToFileUrl(os.path.join(out_dir, "protected.xls"))
            doc.storeToURL(url, (prop("FilterName", "MS Excel 97"), prop("Password", sys.argv[3])))
        doc.close(True)
        try:
            desktop.terminate()
        except Exception:  # the bridge closes as the office exits
            pass
        office.wait(30)
    finally:
        if office.poll() is None:
            office.kill()
            office.wait()


main()

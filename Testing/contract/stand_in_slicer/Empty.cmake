# Nothing to do for the stand-in (the real files generate the extension config and CPack setup).

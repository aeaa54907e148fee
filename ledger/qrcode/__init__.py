"""City QR codes off chain: the code format and its signature (``codes``), the
trust bundle a terminal carries (``bundle``), and offline verification
(``verify``)."""

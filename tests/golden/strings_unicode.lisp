(setq s "naïve café λ")
(println (size s) (upper s) (explode "λé") (ord "é") (reverse "abç"))
(println (split "日本 語" " ") (find s "λ") (@@ s 6 10) (trim "\t x \n"))

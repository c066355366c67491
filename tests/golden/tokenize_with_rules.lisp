; tokenize takes a rule tokenizer first, as LispE's string module defines it
; (tokenize (rules str (types))); with a string alone it is the LispE-style splitter.
(setq tok (tokenizer))
(println (tokenize tok "n = 12.5;"))
(println (tokenize tok "f(x)" true))
(println (tokenize "(+ a1 2.5)"))
(println (maybe (tokenize tok) "the text is missing"))
(println (maybe (tokenize "a b" "c") "two strings are refused"))

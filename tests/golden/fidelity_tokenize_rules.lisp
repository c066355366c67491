; the rule-driven tokenizer with its default rules
(setq tok (tokenizer_rules))
(println (type tok))
(println (tokenize_rules tok "total += price*2.5e3 // no comment kept"))
(println (tokenize_rules tok "call(\"a b\", 'c', x[1:i+1]) 0x1F"))
(println (size (tokenize_rules tok "i+1")) (size (tokenize_rules tok "count")))
(println (filterlist (\(x) (size (trim x))) (tokenize_rules tok "a  ==\tb")))
(println (tokenize_rules tok "x≠y @z" true))
(get_tokenizer_rules tok)

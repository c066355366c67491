; perplexity.lisp -- scoring text with SmolLM2-135M-Instruct: perplexity, evaluation, token logprobs.
; model: smollm2
;
; Perplexity is exp(-mean log p(token | previous tokens)): how surprised the model is by a text
; (lower = more expected). torch_evaluate reports it per text and over a list (token-weighted);
; torch_generate_scored gives the log-probability of every token the model generates.

(use 'lispe_torch)

(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))

(setq fluent "The capital of France is Paris. It is known for the Eiffel Tower.")
(setq scrambled "Tower capital Eiffel the France. known is Paris for of It The is")
(setq p1 (torch_perplexity model fluent))
(setq p2 (torch_perplexity model scrambled))
(println "Perplexity of a fluent sentence:   " p1)
(println "Perplexity of the same words mixed:" p2)
(println "The fluent one is more expected:" (< p1 p2))

(setq report (torch_evaluate model (strings "Water boils at 100 degrees Celsius."
                                            "The quick brown fox jumps over the lazy dog."
                                            "Colorless green ideas sleep furiously.")))
(println "Evaluation over" (size (@ report "texts")) "texts," (@ report "tokens") "tokens: perplexity" (@ report "perplexity"))
(loop t (@ report "texts")
   (println "  text" (@ t "index") ":" (@ t "tokens") "tokens, perplexity" (@ t "perplexity")))

; per-token log-probabilities of a generated answer, with the 3 most likely alternatives
(setq generator (torch_generator_create model "cpu"))
(setq scored (torch_generate_scored generator (tokenizer_chat '(("user" "What is 2 + 2?"))) {"max_length":8} 3))
(println "Answer:" (@ scored "text"))
(loop tok (@ scored "tokens")
   (println "  token" (@ tok "id") (json (@ tok "text")) "logprob" (@ tok "raw_logprob") "top 3:" (@ tok "raw_top")))
(println "Sequence logprob:" (@ scored "raw_sequence_logprob") "perplexity:" (@ scored "perplexity"))

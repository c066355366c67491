; repetition_control.lisp -- the "Repetition control" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; The block lists three alternatives in one association list: later pairs win, so applying it sets
; 1.3. The script then runs each value on its own so the effect can be compared: the penalty divides
; the score of every token already in the text, so repeats become rarer as it grows.
; A tiny random transformer keeps this fast (its text is noise); with tied embeddings it tends to
; repeat itself, which makes the penalty's effect easy to see.

(use 'lispe_torch)

; [added] what the block assumes: a generator; a tokenizer to read the output; a prompt
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":11 "tie_word_embeddings":true "init_std":0.05}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_encode "I think that")))

(setq config (
    ("repetition_penalty" 1.0)   ; No penalty
    ("repetition_penalty" 1.1)   ; Light penalty (recommended)
    ("repetition_penalty" 1.3)   ; Strong penalty (risk of incoherence)
))

; [added]
(torch_generator_config generator config)
(println "After applying the list (later pairs win):" (@ (torch_generator_info generator) "repetition_penalty"))
(loop penalty (numbers 1.0 1.1 1.3 3.0)
    (torch_generator_config generator (list (list "repetition_penalty" penalty)))
    (setq out (torch_generate generator input_tokens "greedy"))
    (setq new (tensor_to_list (tensor_slice out 0 (size input_tokens) (size out))))
    (println "repetition_penalty" penalty ":" (- (size new) (size (unique new))) "repeated tokens in" (size new)
             "|" (tokenizer_decode (tensor_slice out 0 (size input_tokens) (+ (size input_tokens) 10))) "..."))

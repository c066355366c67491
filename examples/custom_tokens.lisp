; custom_tokens.lisp -- the "Special tokens" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; Generation stops at the EOS (kept in the output); rows that finish early are filled with the pad id.
; To show it, this tiny random model is told to end on the token it picks third.

(use 'lispe_torch)

; [added] what the block assumes: a generator (tiny random Llama-style model, fast)
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":9}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model "cpu"))

; Configure special tokens for your model
(setq config (
    ("eos_token_id" 2)      ; </s> for Llama models
    ("pad_token_id" 0)      ; <pad> token  
    ("bos_token_id" 1)      ; <s> beginning of sequence
))

; [added] apply it; first see what greedy decoding writes without an EOS it can reach
(torch_generator_config generator config)
; (tokenizer_decode leaves special tokens out of the text unless told otherwise: false keeps them)
(println "Special tokens of this tokenizer: 0 =" (tokenizer_decode (integers 0) false) " 1 =" (tokenizer_decode (integers 1) false)
         " 2 =" (tokenizer_decode (integers 2) false))
(torch_generator_config generator {"max_length":8})
(setq prompt (tokenizer_encode "Hello there"))
(setq out (torch_generate generator prompt "greedy"))
(println "No EOS met:  " (tensor_to_list out))
(setq third (@ out (+ (size prompt) 2)))
(torch_generator_config generator (list (list "eos_token_id" third)))
(setq out (torch_generate generator prompt "greedy"))
(println "EOS =" third ":" (tensor_to_list out) "(stops after it)")
(setq batch (torch_generate generator (list prompt (tokenizer_encode "Good evening")) "greedy"))
(println "In a batch, the finished row is padded with" 0 ":")
(println batch)

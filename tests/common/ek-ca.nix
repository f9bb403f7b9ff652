# The EK CA of the VM tests, and the vTPM provisioning that gives each test
# node's swtpm an EK certificate issued by it.
#
# Why: nixpkgs' qemu-vm module starts swtpm itself (`swtpm socket ...
# --flags not-need-init --tpm2`), never `swtpm_setup`, so the vTPM of
# `virtualisation.tpm.enable` has no EK certificate at NV index 0x01c00002 and
# no persistent EK. `xnode-agent verify` would then fail `ek_certificate` (it
# has no way to skip that check, nor `ak_activation`). The module's
# `virtualisation.tpm.provisioning` (NixOS/nixpkgs#364379; nixpkgs' own
# `tpm-ek` test does the same) runs a script on the host against the fresh
# swtpm before QEMU starts, with TPM2TOOLS_TCTI pointing at it. Here it does
# what a TPM manufacturer, or `swtpm_setup --create-ek-cert`, does: it makes
# the RSA 2048 EK (TCG default template) persistent at 0x81010001 and stores a
# certificate for it, signed by this CA, at 0x01c00002.
#
# What that proves, and what not: the agent reads the certificate from NV,
# and the verifier checks that it certifies the quoted EK and chains to the
# CA the verifier was given. It says nothing about the EK being a genuine
# TPM's: this CA is made at build time for the tests and signs whatever EK
# the script hands it, here a software TPM's. Production verifiers trust TPM
# manufacturers' CAs only (docs/attestation.md, "Trust").
{ pkgs }:
let
  openssl = "${pkgs.lib.getBin pkgs.openssl}/bin/openssl";

  caConfig = pkgs.writeText "xnode-test-ek-ca.cnf" ''
    [ req ]
    distinguished_name = dn
    prompt = no
    x509_extensions = ca

    [ dn ]
    O = Xnode VM tests
    CN = Xnode test EK CA (trusted only by the VM tests)

    [ ca ]
    basicConstraints = critical, CA:TRUE
    keyUsage = critical, keyCertSign, cRLSign
    subjectKeyIdentifier = hash
  '';

  # The parts of the TCG EK credential profile a verifier may look at; the
  # TPM manufacturer/model subjectAltName is left out (nothing checks it).
  ekExtensions = pkgs.writeText "xnode-test-ek-cert.cnf" ''
    [ ek ]
    basicConstraints = critical, CA:FALSE
    keyUsage = critical, keyEncipherment
    extendedKeyUsage = 2.23.133.8.1
    authorityKeyIdentifier = keyid
  '';

  # Test-only key material, in the store on purpose. Valid for 100 years
  # from when it was built: the verifier checks every validity period.
  ca = pkgs.runCommand "xnode-test-ek-ca" { } ''
    mkdir "$out"
    ${openssl} req -x509 -config ${caConfig} -sha256 -days 36500 -nodes \
      -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
      -keyout "$out/ca.key" -out "$out/ca.pem"
    # The same subject with another key: a verifier given this one must not
    # accept the EK certificates the real one signed.
    ${openssl} req -x509 -config ${caConfig} -sha256 -days 36500 -nodes \
      -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
      -keyout impostor.key -out "$out/impostor.pem"
  '';
in
{
  inherit ca;
  caFile = "${ca}/ca.pem";
  impostorFile = "${ca}/impostor.pem";

  # For `virtualisation.tpm.provisioning`: runs at every start of the VM
  # (the swtpm state survives a reboot within a test), so it does nothing
  # once the certificate is there.
  provisioning = ''
    if ! tpm2_getcap handles-nv-index | grep -qi '0x1c00002'; then
      ek_dir=$(mktemp -d)
      tpm2_createek -G rsa -c 0x81010001 -f pem -u "$ek_dir/ek.pem"
      ${openssl} x509 -new -days 3650 \
        -subj "/O=Xnode VM tests/CN=Xnode test vTPM EK" \
        -extfile ${ekExtensions} -extensions ek \
        -CA ${ca}/ca.pem -CAkey ${ca}/ca.key \
        -force_pubkey "$ek_dir/ek.pem" -outform der -out "$ek_dir/ek.der"
      # Owner-defined with authread: the agent reads it with the index's own
      # (empty) auth, as tss-esapi's retrieve_ek_pubcert does.
      tpm2_nvdefine 0x01c00002 -C o \
        -a "ownerread|ownerwrite|authread|authwrite|no_da" \
        -s "$(stat -c %s "$ek_dir/ek.der")"
      tpm2_nvwrite 0x01c00002 -C o -i "$ek_dir/ek.der"
      rm -r "$ek_dir"
    fi
  '';
}

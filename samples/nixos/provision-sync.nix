# provision-sync.nix — a NixOS module snippet: sync Matrix accounts with the staff
# roster every night. See docs/sync.md. Import it from configuration.nix:
#
#   imports = [ ./provision-sync.nix ];
#
# Secrets must stay out of the Nix store, which every local user can read: never
# write the token as a Nix string (environment.PROVISION_ADMIN_TOKEN = "syt_..." or
# a "--admin-token ..." in a script would both land in /nix/store). Deploy it as a
# file instead, with sops-nix, agenix or by hand (mode 0400, owned by root), and hand
# it to the service with LoadCredential: systemd copies it, for this service only,
# into $CREDENTIALS_DIRECTORY.
#
# First look at what it would change (nothing is changed):
#   provision plan --homeserver https://matrix.example.org \
#     --admin-token-file /run/secrets/provision-admin-token \
#     --update --deactivate-missing /var/lib/hr/staff.csv
{ config, lib, pkgs, ... }:

let
  # Build provision from this repository, e.g. with
  #   pkgs.buildGoModule { pname = "provision"; version = "1.0"; src = ./.; vendorHash = "..."; }
  # or take it from your overlay.
  provision = pkgs.provision;

  # Public keys only: safe in the store.
  recipients = pkgs.writeText "provision-recipients.txt" ''
    # operators who may read new people's passwords (age-keygen -y key.txt)
    age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
  '';
in
{
  # With sops-nix, the token file is decrypted at boot to /run/secrets/...:
  # sops.secrets.provision-admin-token = { mode = "0400"; };

  systemd.services.provision-sync = {
    description = "Sync Matrix accounts with the staff roster (provision)";
    wants = [ "network-online.target" ];
    after = [ "network-online.target" "matrix-synapse.service" ];
    serviceConfig = {
      Type = "oneshot";
      DynamicUser = true;
      # The journal, reports and encrypted credentials files, kept across runs.
      StateDirectory = "provision";
      StateDirectoryMode = "0700";
      WorkingDirectory = "/var/lib/provision";
      UMask = "0077";
      LoadCredential = [
        "admin-token:/run/secrets/provision-admin-token"
        "staff.csv:/var/lib/hr/staff.csv"
      ];
      # Only paths and flags here: this command line is in the store.
      ExecStart = lib.concatStringsSep " " [
        "${provision}/bin/provision run --quiet"
        "--homeserver https://matrix.example.org"
        "--admin-token-file \${CREDENTIALS_DIRECTORY}/admin-token"
        "--recipients-file ${recipients}"
        "--update --deactivate-missing --max-deactivate 10"
        "--journal /var/lib/provision/sync.journal"
        "--report /var/lib/provision/report.csv"
        "\${CREDENTIALS_DIRECTORY}/staff.csv"
      ];
      NoNewPrivileges = true;
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
    };
  };

  systemd.timers.provision-sync = {
    wantedBy = [ "timers.target" ];
    timerConfig = {
      OnCalendar = "*-*-* 02:30:00";
      RandomizedDelaySec = "15min";
      Persistent = true;
    };
  };
}
